"""A syringe of an unconfirmed size never runs (H13), on the simulator's machine.

The device cannot see the barrel: it counts doses with the size set. So a
size change, a new load and boot leave the syringe unconfirmed and unprimed,
nothing fires or primes until a completed load is confirmed, and then what
leaves the needle (the machine model's fluid, not the core's count) is the
dose set, whatever the size.
"""

import pytest

from injcore import codes as C
from injcore import machine as M
from injcore.settings import MODE_PRIME
from sim.session import Simulator

DOSE_NL = 10_000


def out_ul(sim, action):
    """What left the needle during `action` and the line's draining after it."""
    drain_ms = 12 * sim.machine.fluid.tau_s() * 1000 + 100  # the line's time constant
    sim.run_ms(drain_ms)  # first what was left in the line (a prime, a shot) drains
    before = sim.machine.fluid.delivered_ul
    action()
    sim.run_ms(drain_ms)
    return sim.machine.fluid.delivered_ul - before


def press(sim):
    """One trigger press; the core's state and notice after it."""
    sim.machine.trigger = True
    sim.run_ms(30)
    sim.machine.trigger = False
    sim.run_ms(5)
    return sim.core.state, sim.core.notice


def nothing_fires_or_primes(sim):
    """A press in single mode and a held trigger in prime mode move nothing."""
    core, m = sim.core, sim.machine
    face, punctures = m.face_um, core.punctures
    shot = out_ul(sim, lambda: press(sim))
    assert core.notice == C.N_SYRINGE_UNCONFIRMED
    mode = core.settings.mode
    core.configure(mode=MODE_PRIME)
    primed = out_ul(sim, lambda: sim.hold_trigger(500))
    assert core.notice == C.N_SYRINGE_UNCONFIRMED
    core.configure(mode=mode)
    assert core.state == C.ST_READY and core.punctures == punctures and not core.primed
    assert m.face_um == face and abs(shot) < 1e-3 and abs(primed) < 1e-3


def load_custom(sim, id_um):
    """Load a custom syringe of bore `id_um` (the model's table has no custom entry)."""
    core, m = sim.core, sim.machine
    core.configure(syringe_model=M.CUSTOM_SYRINGE, syringe_id_um=id_um)
    m.remove_syringe()
    sim.run_ms(5)
    assert core.start_load()
    sim.run_until(lambda s: s.core.state == C.ST_READY, 30_000)
    sim.settle()
    m.insert_syringe(1)
    m.syringe_area_mm2 = M.area_cmm2_from_diameter(id_um) / 100
    sim.run_ms(1)
    assert core.confirm_syringe()


@pytest.mark.hazard("H13")
@pytest.mark.parametrize("model", sorted(m for m in M.SYRINGES if m != 1))
def test_a_size_change_after_loading_and_priming_fires_nothing(ready_sim, model):
    sim = ready_sim
    sim.configure(dose_nl=DOSE_NL)
    assert sim.shot() is not None
    sim.configure(syringe_model=model)  # the 1 mL still seated, or a bigger one swapped in
    assert not sim.core.syringe_confirmed and not sim.core.primed
    assert press(sim) == (C.ST_READY, C.N_SYRINGE_UNCONFIRMED)
    nothing_fires_or_primes(sim)
    assert sim.core.punctures == 1


@pytest.mark.hazard("H13")
def test_a_custom_bore_change_unconfirms_it_too():
    sim = Simulator(trace=False)
    assert sim.home()
    load_custom(sim, 8000)
    sim.prime(800)
    sim.configure(dose_nl=DOSE_NL)
    assert sim.shot() is not None
    sim.configure(syringe_id_um=8100)
    nothing_fires_or_primes(sim)
    # A bore set for a model is not used: no change of size, nothing to confirm.
    sim = Simulator(trace=False)
    assert sim.home()
    sim.load(1)
    sim.configure(syringe_id_um=9000)
    assert sim.core.syringe_confirmed


@pytest.mark.hazard("H13")
@pytest.mark.parametrize("model", sorted(M.SYRINGES))
def test_after_reload_confirm_and_prime_the_needle_delivers_the_dose_set(model):
    sim = Simulator(trace=False)
    assert sim.home()
    sim.load(1)
    sim.prime(800)
    # No suck-back: what it draws in from the skin would make the first shot after a
    # prime put out the dose plus the suck-back (tests/test_dose_model.py measures it).
    sim.configure(dose_nl=DOSE_NL, suckback_nl=0)
    assert out_ul(sim, sim.shot) == pytest.approx(DOSE_NL / 1000, abs=0.2)
    sim.load(model)  # the size set, the plunger back, the syringe seated, OK
    assert sim.core.syringe_confirmed and not sim.core.primed
    assert press(sim) == (C.ST_READY, C.N_NOT_PRIMED)
    sim.prime(800)
    for _ in range(2):
        # H1's target: within 2 % of 10 uL, out of the needle, with the size's own bore
        assert out_ul(sim, sim.shot) == pytest.approx(DOSE_NL / 1000, abs=0.2)
    assert sim.core.punctures == 3


@pytest.mark.hazard("H13")
def test_boot_a_load_and_a_declined_load_leave_the_syringe_unconfirmed(ready_sim):
    sim = Simulator(trace=False)
    core = sim.core
    assert not core.syringe_confirmed  # boot
    assert sim.home()
    sim.machine.insert_syringe(1)  # seated, but never through a load
    sim.run_ms(1)
    assert not core.confirm_syringe()
    nothing_fires_or_primes(sim)
    # A 3 mL seated with 1 mL set: the operator says no; nothing runs on it.
    sim.load(1, confirm=False)
    sim.machine.insert_syringe(3)
    sim.run_ms(1)
    nothing_fires_or_primes(sim)
    # A load clears the confirmation of the syringe it replaces, from its start.
    sim = ready_sim
    sim.machine.remove_syringe()
    sim.run_ms(5)
    assert sim.core.syringe_confirmed and sim.core.start_load()
    assert not sim.core.syringe_confirmed and not sim.core.primed
    assert not sim.core.confirm_syringe()  # not while the plunger is going back
    sim.run_until(lambda s: s.core.state == C.ST_READY, 30_000)
    assert not sim.core.confirm_syringe()  # the syringe was out for the load: none seated
    sim.machine.insert_syringe(1)
    sim.run_ms(1)
    assert sim.core.confirm_syringe() and not sim.core.confirm_syringe()  # once per load


@pytest.mark.hazard("H13")
def test_a_homing_does_not_open_a_confirmation_a_load_does(ready_sim):
    sim = ready_sim
    core = sim.core
    sim.load(3, confirm=False)
    assert core.syringe_to_confirm
    sim.machine.remove_syringe()  # homing's back-off would push it
    assert sim.home()  # homing instead: the plunger back, but no load to confirm
    sim.machine.insert_syringe(3)
    sim.run_ms(1)
    assert not core.syringe_to_confirm and not core.confirm_syringe()
    nothing_fires_or_primes(sim)
    # A size set after the load's end is the one confirmed: the plunger has not moved.
    sim.load(3, confirm=False)
    sim.configure(syringe_model=5)
    assert core.syringe_to_confirm and core.confirm_syringe()
    assert core.settings.syringe_model == 5 and core.syringe_confirmed
