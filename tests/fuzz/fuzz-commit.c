/* Fuzz harness for the sync commit request parser (appliance/sync.c): any
 * body must be refused with a reason or parse into a request within bounds
 * (geometry accepted by the manifest code, at most MANIFEST_MAX_CHUNKS claims,
 * a base that is 0 or a valid id, a base machine name that is valid). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "appliance/sync.h"
#include "lib/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sync_commit *c = NULL;
	char err[256] = "";

	if (size > SYNC_MAX_BODY)
		return 0;
	if (sync_commit_parse((const char *)data, size, &c, err, sizeof(err)) < 0) {
		if (c || !err[0])
			abort(); /* every refusal says why */
		return 0;
	}
	if (!c || manifest_geometry_ok(c->volume_size, c->chunk_size) < 0 || c->volume_size == 0 ||
	    c->nclaims > MANIFEST_MAX_CHUNKS || c->base > MANIFEST_MAX_VERSION ||
	    (c->base_machine[0] && (!name_is_valid(c->base_machine) || c->base == 0)))
		abort();
	sync_commit_free(c);
	return 0;
}
