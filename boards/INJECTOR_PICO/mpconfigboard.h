// Injector Pico: MicroPython 1.28 ports/rp2 board configuration.
// Hardware: a Raspberry Pi Pico (RP2040, 2 MB flash); see README.md here.
//
// Flash (2 MB): firmware 0x000000-0x05FFFF (384 KB), ROMFS 0x060000 (256 KB),
// littlefs 0x0A0000 (1408 KB). The port puts the filesystem at the end of
// flash and ROMFS directly below it (ports/rp2/rp2_flash.c).

#define MICROPY_HW_BOARD_NAME                   "Injector Pico (RP2040)"

// littlefs filesystem at the top of flash (as on the stock RPI_PICO board).
#define MICROPY_HW_FLASH_STORAGE_BYTES          (1408 * 1024)

// ROMFS partition below the filesystem, mounted at /rom: the firmware's
// compiled modules run in place from flash instead of being loaded into the
// heap. `mpremote romfs deploy DIR` writes it. What is left for the firmware
// itself: 2048 - 1408 - 256 = 384 KB (mk/firmware.mk checks the image fits).
#define MICROPY_HW_ROMFS_BYTES                  (256 * 1024)

// REPL on UART0 as well as on USB CDC: GP0 TX, GP1 RX, 115200 8N1 (the
// pico-sdk's default UART of PICO_BOARD "pico"), for a debug probe or the
// rp2040js emulator, and a way in when USB is busy or gone.
#define MICROPY_HW_ENABLE_UART_REPL             (1)
