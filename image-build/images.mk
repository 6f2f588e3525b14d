# image-build targets (included by the main Makefile):
#   make images          netboot kernel, initramfs (+ goldagent when built), tiny gold
#                        image, whole-disk image for sanboot (image-build/wholedisk.sh)
#   make image-debian    Debian minbase gold image (debootstrap: several minutes)
# Outputs in build/images (GC_IMAGES overrides); reruns rebuild only what changed.
.PHONY: images image-debian
images: all
	@GC_BUILD=$(abspath $(O)) bash image-build/build-all.sh

image-debian:
	@bash image-build/debian-rootfs.sh
