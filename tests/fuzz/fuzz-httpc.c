/* Fuzz harness for lib/httpc's response parser (what goldctl and goldagent read
 * from the network): any bytes, as read until the server closed. Checks that a
 * parsed response has a 3-digit status, a body within the limit and NUL-terminated. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/httpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct httpc_response r;

	if (httpc_parse_response((const char *)data, size, 4096, &r) == 0) {
		if (r.status < 100 || r.status > 999 || r.len > 4096 || !r.body ||
		    r.body[r.len] != '\0' || strlen(r.content_type) >= sizeof(r.content_type))
			abort();
		httpc_response_release(&r);
	}
	return 0;
}
