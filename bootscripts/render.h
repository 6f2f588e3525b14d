/* A small bounded template renderer for iPXE scripts: `{{name}}` is replaced by
 * the value of variable `name`. Values are checked against a charset that has no
 * meaning to iPXE's script parser (no whitespace, newline, '#', '$', '{', '}',
 * '|', '&', ';' or quotes), so a value can never add a script line, a command,
 * an argument or a settings expansion: each value stays one token. */
#ifndef GC_BOOTSCRIPTS_RENDER_H
#define GC_BOOTSCRIPTS_RENDER_H

#include <stddef.h>

/* Limits: a template, one value and the rendered script. */
#define RENDER_MAX_TEMPLATE ((size_t)16 * 1024)
#define RENDER_MAX_VALUE 512
#define RENDER_MAX_OUTPUT ((size_t)64 * 1024)
#define RENDER_MAX_NAME 32

struct render_var {
	const char *name;
	const char *value;
	int words; /* 1: value is zero or more safe tokens separated by single spaces
		    * (extra kernel arguments); 0: exactly one safe token */
};

/* 1 when v is non-empty, at most RENDER_MAX_VALUE bytes and made only of
 * [A-Za-z0-9] and . _ - : / = , @ + (safe as one iPXE script token). */
int render_value_is_safe(const char *v);
/* 1 when v is "" or safe tokens separated by single spaces (no leading, trailing
 * or double space), at most RENDER_MAX_VALUE bytes. */
int render_words_are_safe(const char *v);

/* Renders tmpl (tlen bytes, need not be NUL-terminated) with vars into a new
 * NUL-terminated heap buffer *out (caller frees; *outlen its length). Returns 0,
 * -EINVAL for a malformed template (unterminated or empty `{{`, bad name, NUL
 * byte), -ENOENT for a variable not in vars, -EILSEQ for an unsafe value,
 * -EFBIG when the template or the output exceeds its limit. On error *out is
 * NULL and, when errpos is non-NULL, *errpos is the template offset at fault. */
int render_template(const char *tmpl, size_t tlen, const struct render_var *vars, size_t nvars,
		    char **out, size_t *outlen, size_t *errpos);

#endif
