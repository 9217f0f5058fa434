# Injector Pico: a Raspberry Pi Pico (RP2040, 2 MB flash) running the injector
# firmware. Build with `make firmware MICROPY_DIR=...` from the project root.

# pico-sdk board header boards/pico.h: 2 MB flash, default UART0 on GP0/GP1
# at 115200 (used by the UART REPL), LED on GP25.
set(PICO_BOARD "pico")
set(PICO_PLATFORM "rp2040")
