/*
 * test_codec.c — the value codec: JSON and msgpack bodies to and from json_t.
 *
 * Sections: format detection; round trips; encodings as bytes; the two
 * formats agree; rejections of msgpack; rejections of JSON; packing and
 * converting msgpack objects; msgpack straight to JSON text.
 */
#include "common/codec.h"

#include "tests/support/check_util.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------ */

/* msgpack built by hand, so tests can write what guild would never encode. */
typedef struct mp_buf {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} mp_buf;

static void mp_init(mp_buf *m)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void mp_str(mp_buf *m, const char *s, size_t n)
{
    msgpack_pack_str(&m->pk, n);
    msgpack_pack_str_body(&m->pk, s, n);
}

static void mp_cstr(mp_buf *m, const char *s)
{
    mp_str(m, s, strlen(s));
}

static void mp_release(mp_buf *m)
{
    msgpack_sbuffer_destroy(&m->sb);
}

/* Decodes and expects failure; returns the error for its message. */
static guild_error decode_fails(const void *body, size_t len, guild_format fmt)
{
    guild_error err;
    guild_error_clear(&err);
    json_t *sentinel = json_string("untouched");
    json_t *out = sentinel;
    ck_assert_status(guild_codec_decode(body, len, fmt, &out, &err), GUILD_INVALID_REQUEST);
    ck_assert_ptr_eq(out, sentinel);
    ck_assert_int_eq(err.status, GUILD_INVALID_REQUEST);
    json_decref(sentinel);
    return err;
}

static void assert_msgpack_refused(const mp_buf *m, const char *reason)
{
    guild_error err = decode_fails(m->sb.data, m->sb.size, GUILD_FMT_MSGPACK);
    ck_assert_msg(strncmp(err.message, "body is not valid msgpack", 25) == 0, "message: %s",
                  err.message);
    ck_assert_msg(strstr(err.message, reason) != NULL, "message \"%s\" lacks \"%s\"", err.message,
                  reason);
    /* Checking without decoding refuses it for the same reason. */
    guild_error check;
    guild_error_clear(&check);
    ck_assert_int_eq(guild_codec_check_msgpack(m->sb.data, m->sb.size, &check),
                     GUILD_INVALID_REQUEST);
    ck_assert_msg(strstr(check.message, reason) != NULL, "check: \"%s\" lacks \"%s\"",
                  check.message, reason);
    /* And so does writing it as JSON text, which leaves the buffer as it was. */
    guild_buf out = {0};
    guild_buf_put(&out, "[1,", 3);
    guild_error text;
    guild_error_clear(&text);
    ck_assert_int_eq(guild_codec_json_from_msgpack(m->sb.data, m->sb.size, &out, &text),
                     GUILD_INVALID_REQUEST);
    ck_assert_msg(strstr(text.message, reason) != NULL, "text: \"%s\" lacks \"%s\"", text.message,
                  reason);
    ck_assert_uint_eq(out.len, 3);
    free(out.data);
}

static void assert_bytes_refused(const char *bytes, size_t n, const char *reason)
{
    mp_buf m;
    mp_init(&m);
    if (n > 0) /* msgpack_sbuffer_write would memcpy to NULL */
        msgpack_sbuffer_write(&m.sb, bytes, n);
    assert_msgpack_refused(&m, reason);
    mp_release(&m);
}

static void assert_json_refused(const char *text, const char *reason)
{
    guild_error err = decode_fails(text, strlen(text), GUILD_FMT_JSON);
    ck_assert_msg(strncmp(err.message, "body is not valid JSON: ", 24) == 0, "message: %s",
                  err.message);
    ck_assert_msg(strstr(err.message, reason) != NULL, "message \"%s\" lacks \"%s\"", err.message,
                  reason);
}

static json_t *decode_ok(const void *body, size_t len, guild_format fmt)
{
    guild_error err;
    guild_error_clear(&err);
    json_t *v = NULL;
    guild_status s = guild_codec_decode(body, len, fmt, &v, &err);
    ck_assert_msg(s == GUILD_OK, "decode failed: %s", err.message);
    ck_assert_ptr_nonnull(v);
    if (fmt == GUILD_FMT_MSGPACK) /* checking without decoding agrees */
        ck_assert_msg(guild_codec_check_msgpack(body, len, &err) == GUILD_OK, "check: %s",
                      err.message);
    return v;
}

/* One value of every kind the codec carries. */
static json_t *every_type(void)
{
    json_t *v =
        json_pack("{s:n, s:b, s:b, s:I, s:I, s:I, s:I, s:f, s:f, s:s, s:s, s:[], s:{}, "
                  "s:[i, s, [n, {s:f}]], s:{s:{s:{s:i}}}}",
                  "nil", "yes", 1, "no", 0, "zero", (json_int_t)0, "small", (json_int_t)7, "min",
                  (json_int_t)INT64_MIN, "max", (json_int_t)INT64_MAX, "half", 0.5, "big",
                  -1.25e300, "empty", "", "utf8", "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80",
                  "no_items", "no_keys", "mixed", 1, "two", "deep", 3.0, "nest", "a", "b", "c", 42);
    ck_assert_ptr_nonnull(v);
    return v;
}

/* ---- format detection ----------------------------------------------------------- */

START_TEST(detect_by_content_type)
{
    static const char mp[] = "\x81\xa1k\x01";
    ck_assert_int_eq(guild_format_detect("application/json", mp, 4), GUILD_FMT_JSON);
    ck_assert_int_eq(guild_format_detect("Application/JSON; charset=utf-8", mp, 4), GUILD_FMT_JSON);
    ck_assert_int_eq(guild_format_detect("application/msgpack", "{}", 2), GUILD_FMT_MSGPACK);
    ck_assert_int_eq(guild_format_detect("application/msgpack ;x=y", "{}", 2), GUILD_FMT_MSGPACK);
}
END_TEST

START_TEST(detect_by_first_byte_without_header)
{
    ck_assert_int_eq(guild_format_detect(NULL, "{\"a\":1}", 7), GUILD_FMT_JSON);
    /* the first byte, not the first non-blank one (CONTRACT.md) */
    ck_assert_int_eq(guild_format_detect(NULL, " {}", 3), GUILD_FMT_MSGPACK);
    ck_assert_int_eq(guild_format_detect(NULL, "\n{}", 3), GUILD_FMT_MSGPACK);
    ck_assert_int_eq(guild_format_detect(NULL, "\x81\xa1k\x01", 4), GUILD_FMT_MSGPACK);
    ck_assert_int_eq(guild_format_detect(NULL, "[1]", 3), GUILD_FMT_MSGPACK);
    ck_assert_int_eq(guild_format_detect(NULL, "  ", 2), GUILD_FMT_MSGPACK);
    ck_assert_int_eq(guild_format_detect(NULL, NULL, 0), GUILD_FMT_MSGPACK);
}
END_TEST

START_TEST(detect_ignores_other_content_types)
{
    ck_assert_int_eq(guild_format_detect("text/plain", "{}", 2), GUILD_FMT_JSON);
    ck_assert_int_eq(guild_format_detect("application/jsonx", "\x80", 1), GUILD_FMT_MSGPACK);
    ck_assert_int_eq(guild_format_detect("", "{}", 2), GUILD_FMT_JSON);
}
END_TEST

/* ---- round trips ------------------------------------------------------------------ */

static void assert_round_trip(guild_format fmt)
{
    json_t *v = every_type();
    char *buf = NULL;
    size_t len = 0;
    ck_assert_status(guild_codec_encode(v, fmt, &buf, &len), GUILD_OK);
    ck_assert_uint_gt(len, 0);
    ck_assert_int_eq(buf[len], '\0');
    json_t *back = decode_ok(buf, len, fmt);
    ck_assert_msg(json_equal(v, back), "%s round trip changed the value",
                  fmt == GUILD_FMT_JSON ? "JSON" : "msgpack");
    /* Types survive, not only values: a real stays a real. */
    ck_assert(json_is_real(json_object_get(back, "half")));
    ck_assert(json_is_integer(json_object_get(back, "zero")));

    /* And the second encoding is the first, byte for byte. */
    char *again = NULL;
    size_t again_len = 0;
    ck_assert_status(guild_codec_encode(back, fmt, &again, &again_len), GUILD_OK);
    ck_assert_uint_eq(again_len, len);
    ck_assert_mem_eq(again, buf, len);
    free(again);
    json_decref(back);
    free(buf);
    json_decref(v);
}

START_TEST(json_round_trip_keeps_every_type)
{
    assert_round_trip(GUILD_FMT_JSON);
}
END_TEST

START_TEST(msgpack_round_trip_keeps_every_type)
{
    assert_round_trip(GUILD_FMT_MSGPACK);
}
END_TEST

START_TEST(scalars_round_trip_at_top_level)
{
    json_t *values[] = {json_null(),    json_true(),      json_integer(-5),
                        json_real(2.5), json_string("x"), json_array()};
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        for (int f = GUILD_FMT_JSON; f <= GUILD_FMT_MSGPACK; f++) {
            char *buf;
            size_t len;
            ck_assert_status(guild_codec_encode(values[i], (guild_format)f, &buf, &len), GUILD_OK);
            json_t *back = decode_ok(buf, len, (guild_format)f);
            ck_assert(json_equal(values[i], back));
            json_decref(back);
            free(buf);
        }
        json_decref(values[i]);
    }
}
END_TEST

START_TEST(json_decode_then_encode_is_compact)
{
    static const char in[] = " { \"b\" : [ 1 , 2.5 , \"x\" ] ,\n \"a\" : { } } ";
    json_t *v = decode_ok(in, strlen(in), GUILD_FMT_JSON);
    char *out;
    size_t len;
    ck_assert_status(guild_codec_encode(v, GUILD_FMT_JSON, &out, &len), GUILD_OK);
    ck_assert_str_eq(out, "{\"b\":[1,2.5,\"x\"],\"a\":{}}");
    ck_assert_uint_eq(len, strlen(out));
    free(out);
    json_decref(v);
}
END_TEST

START_TEST(encode_refuses_null)
{
    char *out = (char *)"untouched";
    size_t len = 99;
    ck_assert_status(guild_codec_encode(NULL, GUILD_FMT_JSON, &out, &len), GUILD_INTERNAL);
    ck_assert_status(guild_codec_encode(NULL, GUILD_FMT_MSGPACK, &out, &len), GUILD_INTERNAL);
    ck_assert_str_eq(out, "untouched");
    ck_assert_uint_eq(len, 99);
}
END_TEST

START_TEST(json_encode_refuses_invalid_utf8_that_msgpack_carries)
{
    json_t *v = json_stringn_nocheck("\xff", 1);
    char *out = NULL;
    size_t len = 0;
    ck_assert_status(guild_codec_encode(v, GUILD_FMT_JSON, &out, &len), GUILD_INTERNAL);
    ck_assert_ptr_null(out);
    ck_assert_status(guild_codec_encode(v, GUILD_FMT_MSGPACK, &out, &len), GUILD_OK);
    ck_assert_uint_eq(len, 2);
    ck_assert_mem_eq(out, "\xa1\xff", 2);
    free(out);
    json_decref(v);
}
END_TEST

/* ---- encodings as bytes ------------------------------------------------------------- */

static void assert_packs_as(json_t *v, const char *bytes, size_t n)
{
    char *out;
    size_t len;
    ck_assert_status(guild_codec_encode(v, GUILD_FMT_MSGPACK, &out, &len), GUILD_OK);
    ck_assert_uint_eq(len, n);
    ck_assert_mem_eq(out, bytes, n);
    free(out);
    json_decref(v);
}

START_TEST(integers_pack_in_smallest_form)
{
    assert_packs_as(json_integer(0), "\x00", 1);
    assert_packs_as(json_integer(127), "\x7f", 1);
    assert_packs_as(json_integer(128), "\xcc\x80", 2);
    assert_packs_as(json_integer(65535), "\xcd\xff\xff", 3);
    assert_packs_as(json_integer(65536), "\xce\x00\x01\x00\x00", 5);
    assert_packs_as(json_integer(4294967296LL), "\xcf\x00\x00\x00\x01\x00\x00\x00\x00", 9);
    assert_packs_as(json_integer(-1), "\xff", 1);
    assert_packs_as(json_integer(-32), "\xe0", 1);
    assert_packs_as(json_integer(-33), "\xd0\xdf", 2);
    assert_packs_as(json_integer(-129), "\xd1\xff\x7f", 3);
    assert_packs_as(json_integer(INT64_MIN), "\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9);
}
END_TEST

START_TEST(reals_pack_as_float64)
{
    assert_packs_as(json_real(1.5), "\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", 9);
    assert_packs_as(json_real(0.0), "\xcb\x00\x00\x00\x00\x00\x00\x00\x00", 9);
}
END_TEST

START_TEST(containers_and_strings_pack_as_msgpack_types)
{
    assert_packs_as(json_pack("{s:[b,n]}", "k", 0), "\x81\xa1k\x92\xc2\xc0", 6);
    assert_packs_as(json_string("ab"),
                    "\xa2"
                    "ab",
                    3);
    assert_packs_as(json_true(), "\xc3", 1);
}
END_TEST

START_TEST(float32_decodes_to_real)
{
    json_t *v = decode_ok("\xca\x3f\xc0\x00\x00", 5, GUILD_FMT_MSGPACK); /* 1.5f */
    ck_assert(json_is_real(v));
    ck_assert_double_eq(json_real_value(v), 1.5);
    json_decref(v);
}
END_TEST

START_TEST(integers_decode_across_their_range)
{
    json_t *v = decode_ok("\xcf\x7f\xff\xff\xff\xff\xff\xff\xff", 9, GUILD_FMT_MSGPACK);
    ck_assert_int_eq(json_integer_value(v), INT64_MAX);
    json_decref(v);
    v = decode_ok("\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9, GUILD_FMT_MSGPACK);
    ck_assert_int_eq(json_integer_value(v), INT64_MIN);
    json_decref(v);
    v = decode_ok("\xd0\x05", 2, GUILD_FMT_MSGPACK); /* a signed type holding a positive */
    ck_assert_int_eq(json_integer_value(v), 5);
    json_decref(v);
}
END_TEST

/* ---- the two formats agree ------------------------------------------------------------ */

START_TEST(json_and_msgpack_bodies_decode_equal)
{
    static const char json[] = "{\"skill\":\"c\",\"level\":4,\"rate\":12.5,\"remote\":true,"
                               "\"note\":null,\"tags\":[\"a\",\"\xc3\xa9\"],\"ext\":{\"n\":-3}}";
    mp_buf m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 7);
    mp_cstr(&m, "skill");
    mp_cstr(&m, "c");
    mp_cstr(&m, "level");
    msgpack_pack_uint8(&m.pk, 4);
    mp_cstr(&m, "rate");
    msgpack_pack_double(&m.pk, 12.5);
    mp_cstr(&m, "remote");
    msgpack_pack_true(&m.pk);
    mp_cstr(&m, "note");
    msgpack_pack_nil(&m.pk);
    mp_cstr(&m, "tags");
    msgpack_pack_array(&m.pk, 2);
    mp_cstr(&m, "a");
    mp_cstr(&m, "\xc3\xa9");
    mp_cstr(&m, "ext");
    msgpack_pack_map(&m.pk, 1);
    mp_cstr(&m, "n");
    msgpack_pack_int64(&m.pk, -3);

    json_t *a = decode_ok(json, strlen(json), GUILD_FMT_JSON);
    json_t *b = decode_ok(m.sb.data, m.sb.size, GUILD_FMT_MSGPACK);
    ck_assert(json_equal(a, b));

    /* Each format's encoding of the one decodes to the other. */
    char *out;
    size_t len;
    ck_assert_status(guild_codec_encode(a, GUILD_FMT_MSGPACK, &out, &len), GUILD_OK);
    json_t *c = decode_ok(out, len, GUILD_FMT_MSGPACK);
    ck_assert(json_equal(c, b));
    free(out);
    ck_assert_status(guild_codec_encode(b, GUILD_FMT_JSON, &out, &len), GUILD_OK);
    json_t *d = decode_ok(out, len, GUILD_FMT_JSON);
    ck_assert(json_equal(d, a));
    free(out);

    json_decref(a);
    json_decref(b);
    json_decref(c);
    json_decref(d);
    mp_release(&m);
}
END_TEST

/* ---- rejections of msgpack ---------------------------------------------------------------- */

START_TEST(msgpack_refuses_invalid_utf8)
{
    static const char *const bad[] = {
        "\xc0\x80",         /* overlong NUL */
        "\xe0\x80\xaf",     /* overlong '/' */
        "\xed\xa0\x80",     /* surrogate U+D800 */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xf5\x80\x80\x80", /* never a lead byte */
        "\x80",             /* lone continuation */
        "ab\xe2\x82",       /* cut short */
        "\xff",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        mp_buf m;
        mp_init(&m);
        msgpack_pack_map(&m.pk, 1);
        mp_cstr(&m, "k");
        mp_cstr(&m, bad[i]);
        assert_msgpack_refused(&m, "not valid UTF-8");
        mp_release(&m);

        /* In a key too. */
        mp_init(&m);
        msgpack_pack_map(&m.pk, 1);
        mp_cstr(&m, bad[i]);
        msgpack_pack_int(&m.pk, 1);
        assert_msgpack_refused(&m, "not valid UTF-8");
        mp_release(&m);
    }
}
END_TEST

START_TEST(msgpack_refuses_nul_in_strings)
{
    mp_buf m;
    mp_init(&m);
    msgpack_pack_array(&m.pk, 1);
    mp_str(&m, "a\0b", 3);
    assert_msgpack_refused(&m, "NUL byte");
    mp_release(&m);
}
END_TEST

START_TEST(msgpack_refuses_bin)
{
    mp_buf m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mp_cstr(&m, "k");
    msgpack_pack_bin(&m.pk, 2);
    msgpack_pack_bin_body(&m.pk, "\x01\x02", 2);
    assert_msgpack_refused(&m, "bin values are not supported");
    mp_release(&m);
}
END_TEST

START_TEST(msgpack_refuses_ext)
{
    assert_bytes_refused("\xd4\x01\x00", 3, "ext values are not supported");         /* fixext 1 */
    assert_bytes_refused("\xc7\x02\x05\xaa\xbb", 5, "ext values are not supported"); /* ext 8 */
    assert_bytes_refused("\x91\xd6\xff\x00\x00\x00\x00", 7,
                         "ext values are not supported"); /* timestamp */
}
END_TEST

START_TEST(msgpack_refuses_uint_above_int64_max)
{
    assert_bytes_refused("\xcf\x80\x00\x00\x00\x00\x00\x00\x00", 9, "integer larger than");
    assert_bytes_refused("\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9, "integer larger than");
}
END_TEST

START_TEST(msgpack_refuses_non_finite_floats)
{
    assert_bytes_refused("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", 9, "not finite"); /* NaN */
    assert_bytes_refused("\xca\xff\x80\x00\x00", 5, "not finite");                 /* -inf */
}
END_TEST

/* Arrays nested `levels` deep: [[[...]]]. */
static void pack_nested(mp_buf *m, int levels)
{
    for (int i = 0; i < levels; i++)
        msgpack_pack_array(&m->pk, i + 1 < levels ? 1 : 0);
}

START_TEST(msgpack_accepts_32_levels_and_refuses_33)
{
    mp_buf m;
    mp_init(&m);
    pack_nested(&m, GUILD_CODEC_MAX_DEPTH);
    json_t *v = decode_ok(m.sb.data, m.sb.size, GUILD_FMT_MSGPACK);
    json_decref(v);
    mp_release(&m);

    mp_init(&m);
    pack_nested(&m, GUILD_CODEC_MAX_DEPTH + 1);
    assert_msgpack_refused(&m, "nested deeper than 32 levels");
    mp_release(&m);

    /* Maps count the same way, and far deeper bodies fail the same. */
    mp_init(&m);
    for (int i = 0; i < 1000; i++) {
        msgpack_pack_map(&m.pk, 1);
        mp_cstr(&m, "k");
    }
    msgpack_pack_nil(&m.pk);
    assert_msgpack_refused(&m, "nested deeper than 32 levels");
    mp_release(&m);
}
END_TEST

START_TEST(msgpack_refuses_trailing_bytes)
{
    assert_bytes_refused("\x80\x00", 2, "trailing bytes");
    assert_bytes_refused("\x81\xa1k\x01\x81", 5, "trailing bytes");
}
END_TEST

START_TEST(msgpack_refuses_non_string_keys)
{
    assert_bytes_refused("\x81\x01\x02", 3, "map keys must be strings");      /* int key */
    assert_bytes_refused("\x81\xc0\x02", 3, "map keys must be strings");      /* nil key */
    assert_bytes_refused("\x81\x90\x02", 3, "map keys must be strings");      /* array key */
    assert_bytes_refused("\x81\xc4\x01k\x02", 5, "map keys must be strings"); /* bin key */
}
END_TEST

START_TEST(msgpack_refuses_duplicate_keys)
{
    assert_bytes_refused("\x82\xa1k\x01\xa1k\x02", 7, "duplicate map key");

    /* In a large map too: forty keys, distinct, then with one repeated. */
    for (int repeat = 0; repeat < 2; repeat++) {
        mp_buf m;
        mp_init(&m);
        msgpack_pack_map(&m.pk, 40);
        for (int i = 0; i < 40; i++) {
            char key[16];
            snprintf(key, sizeof key, "key%02d", repeat && i == 39 ? 7 : i);
            mp_cstr(&m, key);
            msgpack_pack_int(&m.pk, i);
        }
        if (repeat) {
            assert_msgpack_refused(&m, "duplicate map key");
        } else {
            json_t *v = decode_ok(m.sb.data, m.sb.size, GUILD_FMT_MSGPACK);
            ck_assert_uint_eq(json_object_size(v), 40);
            json_decref(v);
        }
        mp_release(&m);
    }
}
END_TEST

START_TEST(msgpack_refuses_truncated_and_empty_bodies)
{
    assert_bytes_refused("", 0, "empty body");
    assert_bytes_refused("\x82\xa1k\x01", 4, "truncated");
    assert_bytes_refused("\xa5"
                         "abc",
                         4, "truncated");
    assert_bytes_refused("\xcd\x01", 2, "truncated");
    assert_bytes_refused("\xc1", 1, "invalid type byte");
}
END_TEST

START_TEST(msgpack_refuses_counts_larger_than_the_body)
{
    /* Five bytes that would make msgpack-c allocate for four billion
     * elements: refused before it sees them. */
    assert_bytes_refused("\xdd\xff\xff\xff\xff", 5, "truncated");
    assert_bytes_refused("\xdf\xff\xff\xff\xff\xa1k\x01", 8, "truncated");
    assert_bytes_refused("\xdb\xff\xff\xff\xff", 5, "truncated");
}
END_TEST

/* ---- rejections of JSON --------------------------------------------------------------------- */

START_TEST(json_refuses_malformed_text)
{
    assert_json_refused("{\"a\":", "line 1");
    assert_json_refused("{a:1}", "");
    assert_json_refused("", "empty body");
    assert_json_refused("{\"a\":1,}", "");
    assert_json_refused("\xff", "");
}
END_TEST

START_TEST(json_error_does_not_quote_the_body)
{
    guild_error err = decode_fails("{\"password\": hunter2}", 21, GUILD_FMT_JSON);
    ck_assert_ptr_null(strstr(err.message, "hunter2"));
    ck_assert_ptr_nonnull(strstr(err.message, "line 1"));
}
END_TEST

START_TEST(json_refuses_trailing_garbage)
{
    assert_json_refused("{\"a\":1} x", "");
    assert_json_refused("{}{}", "");
}
END_TEST

START_TEST(json_refuses_duplicate_keys)
{
    assert_json_refused("{\"a\":1,\"a\":2}", "duplicate");
}
END_TEST

START_TEST(json_refuses_invalid_utf8_and_nul)
{
    assert_json_refused("{\"a\":\"\xc0\x80\"}", "");
    assert_json_refused("{\"a\":\"\\u0000\"}", "string contains \\u0000");
}
END_TEST

/* Plain bodies take a fast path that builds jansson values itself; every
 * body, plain or not, must decode to what json_loadb makes of it, keys in
 * the same order, or be refused when jansson refuses it. */
START_TEST(json_bodies_decode_as_jansson_reads_them)
{
    static const char *const bodies[] = {
        "{}",
        "{\"a\":-0}",
        "{\"a\":0,\"b\":-12,\"c\":[1,-2,[],{}],\"d\":{}}",
        "{\"n\":123456789012345678,\"m\":-123456789012345678}",
        "{\"n\":1234567890123456789}",
        "{\"n\":77777700000000000000000000000000000000004099}",
        "{\"n\":-9223372036854775808}",
        "{\"z\":1,\"a\":2,\"m\":3}",
        " \n{ \"a\" : true , \"b\" : false ,\r\n\"c\" : null }\t ",
        "{\"a\":[true,false,null,\"x\"]}",
        "{\"\":\"\",\"k\":\" ~!#$%&'()*+,-./:;<=>?@[]^_`{|}\"}",
        "{\"a\":[{\"b\":[{\"c\":\"d\"}]}]}",
        "{\"a\":1.5,\"b\":1e3,\"c\":-2E-2}",
        "{\"a\":\"x\\\"y\\u00e9\\n\"}",
        "{\"a\":\"\xc3\xa9\",\"b\":\"\x7f\"}",
        "[1,2]",
        "\"text\"",
        "{\"a\":01}",
        "{\"a\":-}",
        "{\"a\":--1}",
        "{\"a\":1.}",
        "{\"a\":tru}",
        "{\"a\":truex}",
        "{\"a\":nul}",
        "{\"a\":1,}",
        "{\"a\":[1,]}",
        "{,}",
        "{\"a\" 1}",
        "{\"a\":1}}",
        "{\"a\":1} x",
        "{\"a\":1,\"a\":1}",
        "{\"a\":{\"b\":1,\"b\":2}}",
        "{\"a\":\"tab\there\"}",
        "{\"a\":\"open}",
        "{\"a\":[1,2}",
        "{\"a\":1",
        "{a:1}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        const char *b = bodies[i];
        json_error_t je;
        json_t *want = json_loadb(b, strlen(b), JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
        json_t *got = NULL;
        guild_status s = guild_codec_decode(b, strlen(b), GUILD_FMT_JSON, &got, NULL);
        ck_assert_msg((s == GUILD_OK) == (want != NULL), "%s: decode %s, jansson %s", b,
                      s == GUILD_OK ? "accepts" : "refuses", want ? "accepts" : "refuses");
        if (!want)
            continue;
        char *g = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
        char *w = json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY);
        ck_assert_msg(json_equal(got, want) && strcmp(g, w) == 0, "%s: decoded %s, jansson %s", b,
                      g, w);
        free(g);
        free(w);
        json_decref(got);
        json_decref(want);
    }
}
END_TEST

/* A document's reals print with 15, 16 or 17 digits, the fewest that give
 * each back exactly, by both JSON paths. */
static void assert_json_text(const json_t *v, const char *want)
{
    char *text = NULL;
    size_t len = 0;
    ck_assert_status(guild_codec_encode(v, GUILD_FMT_JSON, &text, &len), GUILD_OK);
    ck_assert_str_eq(text, want);
    free(text);
    char *mp = NULL;
    ck_assert_status(guild_codec_encode(v, GUILD_FMT_MSGPACK, &mp, &len), GUILD_OK);
    guild_buf b = {0};
    ck_assert_status(guild_codec_json_from_msgpack(mp, len, &b, NULL), GUILD_OK);
    ck_assert_uint_eq(b.len, strlen(want));
    ck_assert(memcmp(b.data, want, b.len) == 0);
    free(b.data);
    free(mp);
}

START_TEST(reals_print_with_the_fewest_digits_that_read_back)
{
    json_t *v = json_pack("{s:f}", "score", 0.51);
    assert_json_text(v, "{\"score\":0.51}");
    json_decref(v);
    v = json_pack("{s:f, s:f, s:f, s:[f]}", "a", 1.0, "b", -2.5e-10, "c", 1e300, "d", 1.0 / 3.0);
    assert_json_text(v, "{\"a\":1.0,\"b\":-2.5e-10,\"c\":1e300,\"d\":[0.3333333333333333]}");
    json_decref(v);
    /* 0.1 + 0.2 needs 17 digits, so 0.1 beside it takes 17 too. */
    v = json_pack("{s:f, s:f}", "a", 0.1, "b", 0.1 + 0.2);
    assert_json_text(v, "{\"a\":0.10000000000000001,\"b\":0.30000000000000004}");
    json_decref(v);
    v = json_pack("{s:i, s:s}", "n", 1, "s", "x");
    ck_assert_uint_eq(guild_json_reals(v), 0);
    json_decref(v);

    /* 2^149 reads back at 15 digits and not at 16, 1/3 at 16 and not at
     * 15: together they take 17. */
    v = json_pack("{s:f, s:f}", "a", 0x1p149, "b", 1.0 / 3.0);
    assert_json_text(v, "{\"a\":7.1362384635297994e44,\"b\":0.33333333333333331}");
    json_decref(v);

    /* Every pair reads back exactly, whatever each needs alone. */
    const double exact[] = {0.51,    1.0 / 3.0, 0.1 + 0.2, nextafter(0.51, 1.0),
                            5e-324,  DBL_MAX,   DBL_MIN,   -123456789.125,
                            0x1p149, 0x1p-645,  0x1p740,   -0x1p966};
    const size_t n = sizeof exact / sizeof *exact;
    for (size_t i = 0; i < n * n; i++) {
        json_t *two = json_pack("[f, f]", exact[i / n], exact[i % n]);
        char *text = NULL;
        size_t len = 0;
        ck_assert_status(guild_codec_encode(two, GUILD_FMT_JSON, &text, &len), GUILD_OK);
        json_t *back = NULL;
        ck_assert_status(guild_codec_decode(text, len, GUILD_FMT_JSON, &back, NULL), GUILD_OK);
        ck_assert_msg(json_equal(back, two), "%s", text);
        free(text);
        json_decref(back);
        json_decref(two);
    }
}
END_TEST

START_TEST(json_refuses_out_of_range_integers)
{
    assert_json_refused("{\"a\":9223372036854775808}", "");
    json_t *v = decode_ok("{\"a\":9223372036854775807}", 25, GUILD_FMT_JSON);
    ck_assert_int_eq(json_integer_value(json_object_get(v, "a")), INT64_MAX);
    json_decref(v);
}
END_TEST

START_TEST(json_accepts_32_levels_and_refuses_33)
{
    char text[2 * 40 + 1];
    int n = GUILD_CODEC_MAX_DEPTH;
    memset(text, '[', (size_t)n);
    memset(text + n, ']', (size_t)n);
    json_t *v = decode_ok(text, 2 * (size_t)n, GUILD_FMT_JSON);
    json_decref(v);

    n = GUILD_CODEC_MAX_DEPTH + 1;
    memset(text, '[', (size_t)n);
    memset(text + n, ']', (size_t)n);
    text[2 * n] = '\0';
    assert_json_refused(text, "nested deeper than 32 levels");

    /* Objects count too, and an object body of 32 levels is read by the
     * fast path for plain bodies: it must take it, and refuse 33. */
    char obj[40 * 6 + 1] = "";
    for (int i = 0; i < GUILD_CODEC_MAX_DEPTH - 1; i++)
        strcat(obj, "{\"k\":");
    strcat(obj, "{}");
    for (int i = 0; i < GUILD_CODEC_MAX_DEPTH - 1; i++)
        strcat(obj, "}");
    v = decode_ok(obj, strlen(obj), GUILD_FMT_JSON);
    json_decref(v);
    memmove(obj + 5, obj, strlen(obj) + 1);
    memcpy(obj, "{\"k\":", 5);
    strcat(obj, "}");
    assert_json_refused(obj, "nested deeper than 32 levels");
}
END_TEST

/* ---- packing and converting msgpack objects ---------------------------------------------------
 */

START_TEST(pack_writes_into_an_existing_packer)
{
    mp_buf m;
    mp_init(&m);
    msgpack_pack_array(&m.pk, 3);
    json_t *v = json_pack("{s:i}", "n", 1);
    guild_codec_pack(&m.pk, v);
    guild_codec_pack(&m.pk, NULL);
    msgpack_pack_int(&m.pk, 9);
    ck_assert_uint_eq(m.sb.size, 7);
    ck_assert_mem_eq(m.sb.data, "\x93\x81\xa1n\x01\xc0\x09", 7);
    json_decref(v);
    mp_release(&m);
}
END_TEST

START_TEST(from_msgpack_object_converts_unpacked_values)
{
    mp_buf m;
    mp_init(&m);
    json_t *v = every_type();
    guild_codec_pack(&m.pk, v);

    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    ck_assert_int_eq(msgpack_unpack_next(&u, m.sb.data, m.sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    json_t *out = NULL;
    ck_assert_status(guild_codec_from_msgpack_object(&u.data, &out, NULL), GUILD_OK);
    msgpack_unpacked_destroy(&u);
    mp_release(&m);
    /* Nothing points into the freed zone or buffer. */
    ck_assert(json_equal(v, out));
    json_decref(out);
    json_decref(v);
}
END_TEST

START_TEST(from_msgpack_object_applies_the_same_rules)
{
    msgpack_object bin = {.type = MSGPACK_OBJECT_BIN};
    bin.via.bin.ptr = "x";
    bin.via.bin.size = 1;
    json_t *out = NULL;
    guild_error err;
    ck_assert_status(guild_codec_from_msgpack_object(&bin, &out, &err), GUILD_INVALID_REQUEST);
    ck_assert_ptr_null(out);
    ck_assert_ptr_nonnull(strstr(err.message, "bin values are not supported"));

    /* 33 nested arrays built in memory, no bytes involved. */
    msgpack_object levels[GUILD_CODEC_MAX_DEPTH + 1];
    for (int i = 0; i <= GUILD_CODEC_MAX_DEPTH; i++) {
        levels[i].type = MSGPACK_OBJECT_ARRAY;
        levels[i].via.array.size = i < GUILD_CODEC_MAX_DEPTH ? 1 : 0;
        levels[i].via.array.ptr = i < GUILD_CODEC_MAX_DEPTH ? &levels[i + 1] : NULL;
    }
    ck_assert_status(guild_codec_from_msgpack_object(&levels[0], &out, &err),
                     GUILD_INVALID_REQUEST);
    ck_assert_ptr_nonnull(strstr(err.message, "nested deeper than 32 levels"));
    ck_assert_status(guild_codec_from_msgpack_object(&levels[1], &out, &err), GUILD_OK);
    json_decref(out);

    /* An empty string may come with no pointer at all. */
    msgpack_object empty = {.type = MSGPACK_OBJECT_STR};
    ck_assert_status(guild_codec_from_msgpack_object(&empty, &out, NULL), GUILD_OK);
    ck_assert_str_eq(json_string_value(out), "");
    json_decref(out);
}
END_TEST

/* ---- msgpack straight to JSON text --------------------------------------------- */

/* What the tree gives: decode the msgpack, then encode the tree as JSON. */
static char *text_by_tree(const void *mp, size_t len)
{
    json_t *v = decode_ok(mp, len, GUILD_FMT_MSGPACK);
    char *text = NULL;
    size_t n = 0;
    ck_assert_status(guild_codec_encode(v, GUILD_FMT_JSON, &text, &n), GUILD_OK);
    json_decref(v);
    return text;
}

/* Both ways of writing the msgpack of v as JSON give the same bytes; the
 * direct one appends after what the buffer held. */
static void assert_same_text(const json_t *v)
{
    char *mp = NULL;
    size_t len = 0;
    ck_assert_status(guild_codec_encode(v, GUILD_FMT_MSGPACK, &mp, &len), GUILD_OK);
    char *want = text_by_tree(mp, len);
    guild_buf out = {0};
    guild_buf_put(&out, "x", 1);
    guild_error err;
    guild_error_clear(&err);
    ck_assert_msg(guild_codec_json_from_msgpack(mp, len, &out, &err) == GUILD_OK, "%s",
                  err.message);
    out.data[out.len] = '\0';
    ck_assert_str_eq(out.data + 1, want);
    ck_assert_int_eq(out.data[0], 'x');
    free(out.data);
    free(want);
    free(mp);
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Strings with what JSON escapes and what it carries as it is. */
static json_t *random_string(uint64_t *rng)
{
    static const char *const parts[] = {"a",
                                        "Z",
                                        "0",
                                        " ",
                                        "\"",
                                        "\\",
                                        "/",
                                        "\b",
                                        "\f",
                                        "\n",
                                        "\r",
                                        "\t",
                                        "\x01",
                                        "\x1f",
                                        "\x7f",
                                        "é",
                                        "\xe2\x82\xac",
                                        "\xf0\x9f\x98\x80",
                                        "\xe2\x80\xa8",
                                        "key"};
    char buf[128] = "";
    size_t n = rng_next(rng) % 8;
    for (size_t i = 0; i < n; i++)
        strcat(buf, parts[rng_next(rng) % (sizeof parts / sizeof parts[0])]);
    return json_string(buf);
}

static json_t *random_real(uint64_t *rng)
{
    static const double fixed[] = {
        0.0,  -0.0,     0.5,     1.0,       -1.0,   0.1,   1e21,    1e22,
        1e-7, 123456.0, 1.5e300, -2.5e-300, 5e-324, 1e100, 33.3333, 9007199254740993.0};
    if (rng_next(rng) % 2)
        return json_real(fixed[rng_next(rng) % (sizeof fixed / sizeof fixed[0])]);
    for (;;) { /* any finite double, from its bits */
        uint64_t bits = rng_next(rng);
        double d;
        memcpy(&d, &bits, sizeof d);
        if (isfinite(d))
            return json_real(d);
    }
}

static json_t *random_value(uint64_t *rng, int depth)
{
    switch (rng_next(rng) % (depth < 4 ? 9 : 7)) {
    case 0:
        return json_null();
    case 1:
        return json_boolean(rng_next(rng) % 2);
    case 2:
        return json_integer((json_int_t)rng_next(rng));
    case 3:
        return json_integer((json_int_t)(rng_next(rng) % 300) - 150);
    case 4:
        return random_real(rng);
    case 5:
    case 6:
        return random_string(rng);
    case 7: {
        json_t *a = json_array();
        for (size_t i = rng_next(rng) % 5; i > 0; i--)
            json_array_append_new(a, random_value(rng, depth + 1));
        return a;
    }
    default: {
        json_t *o = json_object();
        for (size_t i = rng_next(rng) % 6; i > 0; i--) {
            json_t *k = random_string(rng);
            json_object_set_new(o, json_string_value(k), random_value(rng, depth + 1));
            json_decref(k);
        }
        return o;
    }
    }
}

START_TEST(json_text_from_msgpack_equals_the_trees)
{
    json_t *v = every_type();
    assert_same_text(v);
    json_decref(v);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 3000; i++) {
        v = random_value(&rng, 0);
        assert_same_text(v);
        json_decref(v);
    }
}
END_TEST

START_TEST(json_text_from_msgpack_float32_and_integer_forms)
{
    /* msgpack guild never writes: float32, and integers in wider forms than
     * they need, read as the tree reads them. */
    mp_buf m;
    mp_init(&m);
    msgpack_pack_array(&m.pk, 5);
    msgpack_pack_float(&m.pk, 0.1f);
    msgpack_pack_fix_uint64(&m.pk, 7);
    msgpack_pack_fix_int64(&m.pk, -7);
    msgpack_pack_fix_int8(&m.pk, 5);
    msgpack_pack_fix_uint32(&m.pk, 4000000000u);
    char *want = text_by_tree(m.sb.data, m.sb.size);
    guild_buf out = {0};
    ck_assert_status(guild_codec_json_from_msgpack(m.sb.data, m.sb.size, &out, NULL), GUILD_OK);
    out.data[out.len] = '\0';
    ck_assert_str_eq(out.data, want);
    ck_assert_str_eq(out.data, "[0.10000000149011612,7,-7,5,4000000000]");
    free(out.data);
    free(want);
    mp_release(&m);
}
END_TEST

static Suite *codec_suite(void)
{
    Suite *s = suite_create("codec");
    TCase *tc = tcase_create("detect");
    tcase_add_test(tc, detect_by_content_type);
    tcase_add_test(tc, detect_by_first_byte_without_header);
    tcase_add_test(tc, detect_ignores_other_content_types);
    suite_add_tcase(s, tc);

    tc = tcase_create("round_trip");
    tcase_add_test(tc, json_round_trip_keeps_every_type);
    tcase_add_test(tc, msgpack_round_trip_keeps_every_type);
    tcase_add_test(tc, scalars_round_trip_at_top_level);
    tcase_add_test(tc, json_decode_then_encode_is_compact);
    tcase_add_test(tc, encode_refuses_null);
    tcase_add_test(tc, json_encode_refuses_invalid_utf8_that_msgpack_carries);
    suite_add_tcase(s, tc);

    tc = tcase_create("bytes");
    tcase_add_test(tc, integers_pack_in_smallest_form);
    tcase_add_test(tc, reals_pack_as_float64);
    tcase_add_test(tc, containers_and_strings_pack_as_msgpack_types);
    tcase_add_test(tc, float32_decodes_to_real);
    tcase_add_test(tc, integers_decode_across_their_range);
    tcase_add_test(tc, json_and_msgpack_bodies_decode_equal);
    suite_add_tcase(s, tc);

    tc = tcase_create("msgpack_rejects");
    tcase_add_test(tc, msgpack_refuses_invalid_utf8);
    tcase_add_test(tc, msgpack_refuses_nul_in_strings);
    tcase_add_test(tc, msgpack_refuses_bin);
    tcase_add_test(tc, msgpack_refuses_ext);
    tcase_add_test(tc, msgpack_refuses_uint_above_int64_max);
    tcase_add_test(tc, msgpack_refuses_non_finite_floats);
    tcase_add_test(tc, msgpack_accepts_32_levels_and_refuses_33);
    tcase_add_test(tc, msgpack_refuses_trailing_bytes);
    tcase_add_test(tc, msgpack_refuses_non_string_keys);
    tcase_add_test(tc, msgpack_refuses_duplicate_keys);
    tcase_add_test(tc, msgpack_refuses_truncated_and_empty_bodies);
    tcase_add_test(tc, msgpack_refuses_counts_larger_than_the_body);
    suite_add_tcase(s, tc);

    tc = tcase_create("json_rejects");
    tcase_add_test(tc, json_refuses_malformed_text);
    tcase_add_test(tc, json_error_does_not_quote_the_body);
    tcase_add_test(tc, json_refuses_trailing_garbage);
    tcase_add_test(tc, json_refuses_duplicate_keys);
    tcase_add_test(tc, json_refuses_invalid_utf8_and_nul);
    tcase_add_test(tc, json_refuses_out_of_range_integers);
    tcase_add_test(tc, json_bodies_decode_as_jansson_reads_them);
    tcase_add_test(tc, json_accepts_32_levels_and_refuses_33);
    suite_add_tcase(s, tc);

    tc = tcase_create("msgpack_objects");
    tcase_add_test(tc, pack_writes_into_an_existing_packer);
    tcase_add_test(tc, from_msgpack_object_converts_unpacked_values);
    tcase_add_test(tc, from_msgpack_object_applies_the_same_rules);
    suite_add_tcase(s, tc);

    tc = tcase_create("json_text");
    tcase_add_test(tc, json_text_from_msgpack_equals_the_trees);
    tcase_add_test(tc, json_text_from_msgpack_float32_and_integer_forms);
    tcase_add_test(tc, reals_print_with_the_fewest_digits_that_read_back);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tst_run_suite(codec_suite());
}
