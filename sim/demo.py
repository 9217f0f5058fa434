"""The demo session `make sim` runs: home, load, prime, then punctures in two modes.

The simulation only: `injector sim` (host_tools/sim_tool.py) runs it, prints its
punctures, reads the treatment log it wrote and writes the report and the plot.
"""

from injcore import codes as C
from injcore.settings import MODE_CONTINUOUS, MODE_SINGLE

from .session import Simulator


def run_demo(single_shots=8, burst_ms=3000, seed=1, log_dir=None):
    """The demo session; with `log_dir`, the firmware's treatment log is written there."""
    sim = Simulator(seed=seed)
    recorder = sim.attach_log(log_dir) if log_dir is not None else None
    if not sim.home():
        raise SystemExit("homing failed: %s" % C.FAULT_NAMES[sim.core.fault])
    sim.load(model=1)
    if recorder is not None:
        recorder.start_session("DEMO-LOT")  # the syringe is in: the session (and its log) begins
    sim.prime(1500)
    # Point by point: skin-booster-like papules.
    sim.configure(
        mode=MODE_SINGLE,
        depth_um=1000,
        dose_nl=20_000,
        speed_um_s=20_000,
        rate_nl_s=50_000,
        suckback_nl=500,
    )
    for _ in range(single_shots):
        sim.shot()
        sim.run_ms(200)  # the operator moves the handpiece
    # Nappage: shallow, small and fast while the trigger is held.
    sim.configure(
        mode=MODE_CONTINUOUS,
        depth_um=600,
        dose_nl=2000,
        speed_um_s=40_000,
        rate_nl_s=100_000,
        shot_rate_mhz=5000,
        suckback_nl=200,
    )
    sim.burst(burst_ms)
    sim.settle()
    if recorder is not None:
        recorder.end_session()
    return sim
