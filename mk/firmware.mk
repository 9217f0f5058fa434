# `make firmware MICROPY_DIR=/path/to/micropython`: the MicroPython image for
# the injector's board (boards/INJECTOR_PICO), built from a MicroPython 1.28
# checkout with its rp2 submodules, into build/firmware/injector-pico.uf2.
# Included by the main Makefile; also works alone: make -f mk/firmware.mk firmware ...
#
# Needs: arm-none-eabi-gcc with newlib, cmake, make, python3, a host C++
# compiler. Nothing of MicroPython or the pico-sdk is kept in this project.
# pico-sdk 2.x makes the .uf2 with picotool: on the first build it clones and
# builds picotool (network) into the build folder, unless one is installed
# (picotool_DIR) or PICOTOOL_FETCH_FROM_GIT_PATH=DIR names a folder to keep it in.

# The project root, from where this file is (the cwd may be elsewhere).
FW_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)
# Included at the top of another Makefile, do not become its default goal.
FW_STANDALONE := $(if $(filter 1,$(words $(MAKEFILE_LIST))),1)
FW_SAVED_GOAL := $(.DEFAULT_GOAL)

MICROPY_DIR ?=
FW_MICROPY_VERSION ?= 1.28
FW_BOARD ?= INJECTOR_PICO
FW_BOARD_DIR ?= $(FW_ROOT)/boards/$(FW_BOARD)
FW_OUT_DIR ?= $(FW_ROOT)/build/firmware
FW_BUILD_DIR ?= $(FW_OUT_DIR)/build-$(FW_BOARD)
FW_NAME ?= injector-pico
FW_CROSS ?= arm-none-eabi-
# Flash size of the board; the firmware must end below the ROMFS partition,
# which is at FW_FLASH_BYTES - MICROPY_HW_FLASH_STORAGE_BYTES - MICROPY_HW_ROMFS_BYTES
# (both read from the board's mpconfigboard.h): 0x060000 = 384 KB here.
FW_FLASH_BYTES ?= 2097152

FW_MP := $(abspath $(MICROPY_DIR))
FW_ELF := $(FW_BUILD_DIR)/firmware.elf
FW_SUBMODULES := lib/pico-sdk/README.md lib/tinyusb/src/tusb.h lib/mbedtls/include/mbedtls/version.h lib/micropython-lib/README.md

.PHONY: firmware
firmware:
	@fail() { echo "firmware: $$*" >&2; exit 2; }; \
	[ -n "$(MICROPY_DIR)" ] || fail "set MICROPY_DIR to a MicroPython $(FW_MICROPY_VERSION) checkout: make firmware MICROPY_DIR=/path/to/micropython"; \
	[ -d "$(FW_MP)" ] || fail "MICROPY_DIR=$(MICROPY_DIR) is not a directory"; \
	[ -f "$(FW_MP)/py/mpconfig.h" ] && [ -f "$(FW_MP)/ports/rp2/Makefile" ] || \
		fail "MICROPY_DIR=$(MICROPY_DIR) is not a MicroPython source tree (no py/mpconfig.h or ports/rp2)"; \
	ver=$$(sed -n 's/^#define MICROPY_VERSION_MAJOR \([0-9]*\).*/\1/p; s/^#define MICROPY_VERSION_MINOR \([0-9]*\).*/\1/p' \
		"$(FW_MP)/py/mpconfig.h" | paste -sd.); \
	[ "$$ver" = "$(FW_MICROPY_VERSION)" ] || fail "MICROPY_DIR is MicroPython $${ver:-of unknown version}, need $(FW_MICROPY_VERSION).x (git checkout v$(FW_MICROPY_VERSION).0)"; \
	missing=; for f in $(FW_SUBMODULES); do [ -f "$(FW_MP)/$$f" ] || missing="$$missing $$(echo $$f | cut -d/ -f1-2)"; done; \
	[ -z "$$missing" ] || fail "submodules missing:$$missing; run: make -C $(FW_MP)/ports/rp2 BOARD=RPI_PICO submodules"; \
	command -v $(FW_CROSS)gcc >/dev/null || \
		fail "$(FW_CROSS)gcc not on PATH: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi, or the Arm GNU toolchain"; \
	case "$$($(FW_CROSS)gcc -print-file-name=libc.a)" in */*) ;; \
		*) fail "$(FW_CROSS)gcc has no C library (newlib): apt-get install libnewlib-arm-none-eabi";; esac; \
	command -v cmake >/dev/null || fail "cmake not on PATH: apt-get install cmake"; \
	[ -f "$(FW_BOARD_DIR)/mpconfigboard.cmake" ] || fail "no board definition in $(FW_BOARD_DIR)"; \
	cache="$(FW_BUILD_DIR)/CMakeCache.txt"; \
	if [ -f "$$cache" ] && ! grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$$(cd "$(FW_MP)/ports/rp2" && pwd -P)" "$$cache"; then \
		echo "firmware: $(FW_BUILD_DIR) was configured for another MicroPython tree, starting it afresh"; \
		rm -rf "$(FW_BUILD_DIR)"; \
	fi; \
	rm -f "$(FW_OUT_DIR)/$(FW_NAME).uf2" "$(FW_OUT_DIR)/$(FW_NAME).elf"
	$(MAKE) -C "$(FW_MP)/mpy-cross"
	$(MAKE) -C "$(FW_MP)/ports/rp2" BOARD_DIR="$(FW_BOARD_DIR)" BUILD="$(FW_BUILD_DIR)"
	@fail() { echo "firmware: $$*" >&2; exit 2; }; \
	h="$(FW_BOARD_DIR)/mpconfigboard.h"; \
	storage=$$(sed -n 's/^#define MICROPY_HW_FLASH_STORAGE_BYTES[[:space:]]*//p' "$$h"); \
	romfs=$$(sed -n 's/^#define MICROPY_HW_ROMFS_BYTES[[:space:]]*//p' "$$h"); \
	limit=$$(( $(FW_FLASH_BYTES) - $${storage:-0} - $${romfs:-0} )); \
	end=$$($(FW_CROSS)nm "$(FW_ELF)" | sed -n 's/^\([0-9a-fA-F]*\) . __flash_binary_end$$/\1/p'); \
	[ -n "$$end" ] || fail "no __flash_binary_end symbol in $(FW_ELF)"; \
	used=$$(( 0x$$end - 0x10000000 )); \
	text=$$($(FW_CROSS)size "$(FW_ELF)" | awk 'NR==2 {print $$1}'); \
	[ "$$used" -le "$$limit" ] || \
		fail "image is $$used bytes, over the $$limit bytes below the ROMFS partition at $$(printf 0x%06x $$limit): it would overwrite ROMFS"; \
	cp "$(FW_BUILD_DIR)/firmware.uf2" "$(FW_OUT_DIR)/$(FW_NAME).uf2"; \
	cp "$(FW_ELF)" "$(FW_OUT_DIR)/$(FW_NAME).elf"; \
	echo "firmware: text $$text bytes; flash image $$used of $$limit bytes ($$(( used * 100 / limit ))%) below ROMFS at $$(printf 0x%06x $$limit)"; \
	echo "firmware: $(FW_OUT_DIR)/$(FW_NAME).uf2 ($$(wc -c < "$(FW_OUT_DIR)/$(FW_NAME).uf2") bytes), $(FW_NAME).elf next to it"

ifeq ($(FW_STANDALONE),)
.DEFAULT_GOAL := $(FW_SAVED_GOAL)
endif
