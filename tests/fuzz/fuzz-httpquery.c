/* Fuzz harness for the HTTP request-target parsing goldcached does itself:
 * http_split_uri (path percent-decoding, query split) and http_query_get (query
 * parameters), the MAC parser on the mac parameter, and the API's route
 * matching on the decoded path. Checks that a decoded path starts with '/',
 * decoded values fit their buffers and captures are single, non-dot segments. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "appliance/api.h"
#include "appliance/http.h"
#include "config/config.h"

static const char *const patterns[] = {
	"/boot.ipxe",
	"/boot/images/*/kernel",
	"/api/v1/machines/*",
	"/api/v1/machines/*/state",
	"/api/v1/images/*/*/manifest",
	"/*/*/*",
};

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
		if (http_query_get(query, "mac", val, sizeof(val)) == 0) {
			uint8_t mac[6];

			(void)config_mac_parse(val, mac);
		}
		for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++) {
			char caps[3][129];
			int n = api_route_match(patterns[i], path, caps, 3);

			for (int k = 0; k < n; k++)
				if (!caps[k][0] || strlen(caps[k]) > 128 || strchr(caps[k], '/') ||
				    !strcmp(caps[k], ".") || !strcmp(caps[k], ".."))
					abort();
		}
	}
	free(uri);
	return 0;
}
