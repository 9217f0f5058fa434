"""Board layer: everything that touches RP2040 hardware (rp2, machine)."""
