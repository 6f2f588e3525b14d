/* Fuzz harness for bootscripts/render: input is a template, then NUL-separated
 * values for the variables a, b, mac, machine (one token each) and w (words).
 * Besides memory safety it checks the renderer's promise: a successful render
 * has exactly the template's line count (no value adds a line) and no '$' that
 * the template did not have. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bootscripts/render.h"

static size_t count(const char *s, size_t n, char c)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		k += s[i] == c;
	return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = {"a", "b", "mac", "machine", "w"};
	struct render_var vars[5] = {{0}};
	char *copy = malloc(size + 1), *p, *end, *out = NULL;
	size_t tlen, outlen = 0, nv = 0;

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	end = copy + size;
	tlen = strlen(copy);
	p = copy + tlen + 1;
	for (; nv < 5 && p < end; nv++) {
		vars[nv].name = names[nv];
		vars[nv].value = p;
		vars[nv].words = nv == 4;
		p += strlen(p) + 1;
	}
	if (render_template(copy, tlen, vars, nv, &out, &outlen, NULL) == 0) {
		if (strlen(out) != outlen || count(out, outlen, '\n') != count(copy, tlen, '\n') ||
		    count(out, outlen, '$') != count(copy, tlen, '$'))
			abort();
		free(out);
	} else if (out) {
		abort();
	}
	free(copy);
	return 0;
}
