"""The operator interface: screens and menus drawn with framebuf (no hardware)."""
