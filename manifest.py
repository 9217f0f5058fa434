# MicroPython manifest: the firmware frozen into a build for the Pico, so its
# bytecode and constants run from flash instead of taking RAM (the modules keep
# about 180 KB of heap when imported from files: `make bench`).
#
#   git clone https://github.com/micropython/micropython && cd micropython
#   make -C mpy-cross && make -C ports/rp2 submodules
#   make -C ports/rp2 BOARD=RPI_PICO FROZEN_MANIFEST=/path/to/this/manifest.py
#
# Then flash ports/rp2/build-RPI_PICO/firmware.uf2 and copy only main.py
# (`mpremote cp firmware/main.py :main.py`): modules left on the board's flash
# would be imported before the frozen ones ('' comes first in sys.path).
# Not built here (no ARM toolchain); tests/test_deploy.py keeps the package
# list in step with firmware/.

include("$(PORT_DIR)/boards/manifest.py")  # the port's own frozen modules
package("injcore", base_path="firmware")
package("board", base_path="firmware")
package("ui", base_path="firmware")
