/* iPXE script template renderer (see render.h).
 *
 * Invariants: the output never exceeds RENDER_MAX_OUTPUT; every substituted value
 * passed render_value_is_safe(), so it is a single iPXE token: iPXE splits script
 * lines on '\n', arguments on whitespace, expands ${...}, treats '#' as a comment
 * and '||' / '&&' as operators; none of those bytes can come from a value. The
 * template text itself is trusted (it ships with goldcache) but is still parsed
 * with bounds so a damaged template fails cleanly (and can be fuzzed). */
#include "bootscripts/render.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"

int render_value_is_safe(const char *v)
{
	size_t n = 0;

	if (!v || !*v)
		return 0;
	for (; v[n]; n++) {
		unsigned char c = (unsigned char)v[n];

		if (n >= RENDER_MAX_VALUE)
			return 0;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
			continue;
		if (!strchr("._-:/=,@+", c))
			return 0;
	}
	return 1;
}

int render_words_are_safe(const char *v)
{
	char tok[RENDER_MAX_VALUE + 1];
	size_t n;

	if (!v)
		return 0;
	n = strlen(v);
	if (n > RENDER_MAX_VALUE)
		return 0;
	while (*v) {
		const char *sp = strchr(v, ' ');
		size_t t = sp ? (size_t)(sp - v) : strlen(v);

		memcpy(tok, v, t);
		tok[t] = '\0';
		if (!render_value_is_safe(tok))
			return 0;
		v += t;
		if (*v == ' ' && !*++v)
			return 0; /* trailing space */
	}
	return 1;
}

static int name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

/* Appends n bytes to the output buffer; -EFBIG past the output limit. */
static int out_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (n > RENDER_MAX_OUTPUT || *len > RENDER_MAX_OUTPUT - n)
		return -EFBIG;
	xgrow((void **)buf, cap, *len + n + 1, 1);
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

static const struct render_var *lookup(const struct render_var *vars, size_t nvars,
				       const char *name, size_t nlen)
{
	for (size_t i = 0; i < nvars; i++)
		if (vars[i].name && vars[i].value && strlen(vars[i].name) == nlen &&
		    memcmp(vars[i].name, name, nlen) == 0)
			return &vars[i];
	return NULL;
}

int render_template(const char *tmpl, size_t tlen, const struct render_var *vars, size_t nvars,
		    char **out, size_t *outlen, size_t *errpos)
{
	char *buf = NULL;
	size_t len = 0, cap = 0, i = 0, at = 0;
	int rc = 0;

	*out = NULL;
	if (outlen)
		*outlen = 0;
	if (tlen > RENDER_MAX_TEMPLATE) {
		rc = -EFBIG;
		goto fail;
	}
	rc = out_add(&buf, &len, &cap, "", 0);
	if (rc < 0)
		goto fail;
	while (i < tlen) {
		const char *open = NULL, *name;
		const struct render_var *var;
		size_t lit, nlen = 0;

		at = i;
		for (size_t j = i; j < tlen; j++) {
			if (tmpl[j] == '\0') {
				at = j;
				rc = -EINVAL;
				goto fail;
			}
			if (tmpl[j] == '{' && j + 1 < tlen && tmpl[j + 1] == '{') {
				open = tmpl + j;
				break;
			}
		}
		lit = open ? (size_t)(open - (tmpl + i)) : tlen - i;
		rc = out_add(&buf, &len, &cap, tmpl + i, lit);
		if (rc < 0)
			goto fail;
		i += lit;
		if (!open)
			break;
		at = i;
		name = tmpl + i + 2;
		while (i + 2 + nlen < tlen && name_char(name[nlen]) && nlen <= RENDER_MAX_NAME)
			nlen++;
		if (nlen == 0 || nlen > RENDER_MAX_NAME || i + 2 + nlen + 2 > tlen ||
		    name[nlen] != '}' || name[nlen + 1] != '}') {
			rc = -EINVAL;
			goto fail;
		}
		var = lookup(vars, nvars, name, nlen);
		if (!var) {
			rc = -ENOENT;
			goto fail;
		}
		if (var->words ? !render_words_are_safe(var->value)
			       : !render_value_is_safe(var->value)) {
			rc = -EILSEQ;
			goto fail;
		}
		rc = out_add(&buf, &len, &cap, var->value, strlen(var->value));
		if (rc < 0)
			goto fail;
		i += 2 + nlen + 2;
	}
	*out = buf;
	if (outlen)
		*outlen = len;
	return 0;
fail:
	free(buf);
	if (errpos)
		*errpos = at;
	return rc;
}
