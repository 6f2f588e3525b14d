/* Fuzz harness for what goldagent bootdisk reads from outside: a downloaded
 * kernel's bzImage header (the release), syslinux.cfg's goldcache-bootdisk lines
 * from the machine's disk, and a kernel command line turned into the local
 * entries' arguments. Checks: the release is printable and fits; a parsed
 * syslinux.cfg renders to one that parses back to the same pairs; the arguments
 * fit their buffer and hold no newline. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/bootdisk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bootdisk_cfg c, back;
	char rel[32], out[512], *text, *line;

	if (bootdisk_kernel_release(data, size, rel, sizeof(rel)) == 0) {
		size_t n = strlen(rel);

		if (n == 0 || n >= sizeof(rel))
			abort();
		for (size_t i = 0; i < n; i++)
			if (rel[i] <= ' ' || rel[i] >= 0x7f)
				abort();
	}
	if (bootdisk_cfg_parse((const char *)data, size, &c) == 0) {
		text = bootdisk_cfg_render(&c, "console=ttyS0");
		if (bootdisk_cfg_parse(text, strlen(text), &back) != 0 ||
		    memcmp(&c, &back, sizeof(c)) != 0)
			abort();
		free(text);
	}
	line = malloc(size + 1);
	if (!line)
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';
	if (bootdisk_local_append(line, out, sizeof(out)) == 0 &&
	    (strlen(out) >= sizeof(out) || strchr(out, '\n')))
		abort();
	free(line);
	return 0;
}
