/* Replays a fuzz harness's corpus without libFuzzer: each file (or each file
 * in each directory argument) goes through LLVMFuzzerTestOneInput once. A crash
 * or sanitizer report fails the test; output is TAP, one line per directory. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;

	if (!f)
		return -1;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		fclose(f);
		return -1;
	}
	buf = malloc((size_t)n + 1);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf, (size_t)n);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	int failed = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		DIR *d;
		struct dirent *e;
		int count = 0, bad = 0;

		if (stat(argv[i], &st) < 0) {
			printf("not ok %d - corpus %s missing\n", i, argv[i]);
			failed++;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			bad = run_file(argv[i]) < 0;
			count = 1;
		} else if ((d = opendir(argv[i]))) {
			while ((e = readdir(d))) {
				char p[4096];

				if (e->d_name[0] == '.')
					continue;
				snprintf(p, sizeof(p), "%s/%s", argv[i], e->d_name);
				if (run_file(p) < 0)
					bad++;
				count++;
			}
			closedir(d);
		}
		if (bad || count == 0)
			failed++;
		printf("%sok %d - %d corpus inputs from %s%s\n", bad || !count ? "not " : "", i,
		       count, argv[i], count ? "" : " (empty corpus)");
	}
	printf("1..%d\n", argc - 1);
	return failed ? 1 : 0;
}
