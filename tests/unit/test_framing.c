/* Unit tests for framing.c: every refusal of SPEC section 3 and the
 * accepted framings. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "framing.h"

#define H(n, v) { n, sizeof(n) - 1, v, sizeof(v) - 1 }
#define N(a) (sizeof(a) / sizeof(a[0]))

static mb_framing fr;

static void refused(const mb_header *h, size_t n, int minor, const char *msg)
{
    const char *err = framing_check(h, n, minor, &fr);
    ck_assert_msg(err != NULL, "accepted, expected \"%s\"", msg);
    ck_assert_str_eq(err, msg);
}

static void accepted(const mb_header *h, size_t n, int minor)
{
    const char *err = framing_check(h, n, minor, &fr);
    ck_assert_msg(err == NULL, "refused: %s", err ? err : "");
}

START_TEST(no_body)
{
    mb_header h[] = { H("Host", "gw"), H("X-Auth-Token", "t") };
    accepted(h, N(h), 1);
    ck_assert_int_eq(fr.chunked, 0);
    ck_assert_int_eq(fr.content_length, -1);
}
END_TEST

START_TEST(content_length_only)
{
    mb_header h[] = { H("Host", "gw"), H("Content-Length", "42") };
    accepted(h, N(h), 1);
    ck_assert_int_eq(fr.chunked, 0);
    ck_assert_int_eq(fr.content_length, 42);

    mb_header z[] = { H("host", "gw"), H("content-length", "0") };
    accepted(z, N(z), 1);
    ck_assert_int_eq(fr.content_length, 0);

    mb_header big[] = { H("Host", "gw"), H("Content-Length", "9223372036854775807") };
    accepted(big, N(big), 1);
    ck_assert_int_eq(fr.content_length, INT64_MAX);

    mb_header ows[] = { H("Host", "gw"), H("Content-Length", " 7\t") };
    accepted(ows, N(ows), 1);
    ck_assert_int_eq(fr.content_length, 7);
}
END_TEST

START_TEST(chunked_only)
{
    mb_header h[] = { H("Host", "gw"), H("Transfer-Encoding", "chunked") };
    accepted(h, N(h), 1);
    ck_assert_int_eq(fr.chunked, 1);
    ck_assert_int_eq(fr.content_length, -1);

    mb_header upper[] = { H("TRANSFER-ENCODING", "Chunked"), H("Host", "gw") };
    accepted(upper, N(upper), 1);
    ck_assert_int_eq(fr.chunked, 1);
}
END_TEST

START_TEST(identical_duplicate_content_length)
{
    mb_header h[] = { H("Host", "gw"), H("Content-Length", "5"), H("Content-Length", "5") };
    accepted(h, N(h), 1);
    ck_assert_int_eq(fr.content_length, 5);
}
END_TEST

START_TEST(http10_without_host)
{
    mb_header h[] = { H("Content-Length", "3") };
    accepted(h, N(h), 0);
    ck_assert_int_eq(fr.content_length, 3);
    accepted(NULL, 0, 0);
    ck_assert_int_eq(fr.content_length, -1);
}
END_TEST

START_TEST(cl_and_te)
{
    mb_header h[] = { H("Host", "gw"), H("Content-Length", "5"), H("Transfer-Encoding", "chunked") };
    refused(h, N(h), 1, "Content-Length together with Transfer-Encoding");
    mb_header r[] = { H("Transfer-Encoding", "chunked"), H("Host", "gw"), H("Content-Length", "5") };
    refused(r, N(r), 1, "Content-Length together with Transfer-Encoding");
}
END_TEST

START_TEST(differing_content_lengths)
{
    mb_header h[] = { H("Host", "gw"), H("Content-Length", "5"), H("Content-Length", "6") };
    refused(h, N(h), 1, "several Content-Length headers that differ");
}
END_TEST

START_TEST(bad_content_length)
{
    static const char *const vals[] = {
        "", "abc", "-1", "+5", "5, 5", "5 5", "0x10", "1e3",
        "9223372036854775808", "99999999999999999999999",
    };
    for (size_t i = 0; i < N(vals); i++) {
        mb_header h[] = { { "Host", 4, "gw", 2 }, { "Content-Length", 14, vals[i], strlen(vals[i]) } };
        refused(h, N(h), 1, "invalid Content-Length");
    }
}
END_TEST

START_TEST(bad_transfer_encodings)
{
    static const char *const vals[] = {
        "gzip, chunked", "chunked, gzip", "gzip", "identity", "chunked;x=1",
        "chunkedx", "", "chunked, chunked",
        /* libevhtp reads these as no body at all: a desync if accepted */
        "CHUNKED", "chunKed", "chunked ", "\tchunked", "chunked\t",
    };
    for (size_t i = 0; i < N(vals); i++) {
        mb_header h[] = { { "Host", 4, "gw", 2 }, { "Transfer-Encoding", 17, vals[i], strlen(vals[i]) } };
        refused(h, N(h), 1, "Transfer-Encoding other than a lone chunked");
    }
    mb_header two[] = { H("Host", "gw"), H("Transfer-Encoding", "chunked"),
                        H("Transfer-Encoding", "chunked") };
    refused(two, N(two), 1, "Transfer-Encoding other than a lone chunked");
    mb_header gz[] = { H("Host", "gw"), H("Transfer-Encoding", "gzip"),
                       H("Transfer-Encoding", "chunked") };
    refused(gz, N(gz), 1, "Transfer-Encoding other than a lone chunked");
}
END_TEST

START_TEST(te_in_http10)
{
    mb_header h[] = { H("Transfer-Encoding", "chunked") };
    refused(h, N(h), 0, "Transfer-Encoding in an HTTP/1.0 request");
}
END_TEST

START_TEST(host_rules)
{
    mb_header none[] = { H("Accept", "*/*") };
    refused(none, N(none), 1, "HTTP/1.1 request without Host");
    refused(NULL, 0, 1, "HTTP/1.1 request without Host");
    mb_header two[] = { H("Host", "a"), H("Host", "b") };
    refused(two, N(two), 1, "several Host headers");
    refused(two, N(two), 0, "several Host headers");
}
END_TEST

START_TEST(bad_header_names)
{
    static const char *const names[] = {
        " Host", "Content-Length ", "X Foo", "X\tFoo", "X:Foo", "X\r\nY", "(x)", "X@y",
        "X\x7f", "\xC3\xA9",
    };
    for (size_t i = 0; i < N(names); i++) {
        mb_header h[] = { { "Host", 4, "gw", 2 }, { names[i], strlen(names[i]), "v", 1 } };
        refused(h, N(h), 1, "invalid header name (folded or malformed header line)");
    }
    mb_header empty[] = { H("Host", "gw"), { "", 0, "v", 1 } };
    refused(empty, N(empty), 1, "invalid header name (folded or malformed header line)");
    mb_header null[] = { H("Host", "gw"), { NULL, 0, "v", 1 } };
    refused(null, N(null), 1, "invalid header name (folded or malformed header line)");
    /* every tchar is accepted */
    mb_header t[] = { H("Host", "gw"), H("!#$%&'*+-.^_`|~09azAZ", "v") };
    accepted(t, N(t), 1);
}
END_TEST

START_TEST(bad_header_values)
{
    mb_header cr[] = { H("Host", "gw"), H("X-A", "a\rb") };
    refused(cr, N(cr), 1, "CR, LF or NUL in a header value");
    mb_header lf[] = { H("Host", "gw"), H("X-A", "a\nb") };
    refused(lf, N(lf), 1, "CR, LF or NUL in a header value");
    mb_header nul[] = { H("Host", "gw"), { "X-A", 3, "a\0b", 3 } };
    refused(nul, N(nul), 1, "CR, LF or NUL in a header value");
    mb_header host[] = { H("Host", "gw\r\nX: y") };
    refused(host, N(host), 1, "CR, LF or NUL in a header value");
    /* other bytes (obs-text, tabs) are fine */
    mb_header ok[] = { H("Host", "gw"), H("X-A", "caf\xC3\xA9\tb"), H("X-Empty", "") };
    accepted(ok, N(ok), 1);
}
END_TEST

/* A header block scanned in chunks of every size gives the same answer. */
static void scan_all_chunkings(const char *block, size_t len, size_t want_end, const char *want_bad)
{
    for (size_t chunk = 1; chunk <= len; chunk++) {
        mb_header_scan sc = {0};
        const char *bad = NULL;
        size_t end = 0, off = 0;
        while (off < len) {
            size_t n = len - off < chunk ? len - off : chunk;
            size_t e = framing_scan_headers(&sc, block + off, n, &bad);
            if (bad)
                break;
            if (e) {
                end = off + e;
                break;
            }
            off += n;
        }
        if (want_bad) {
            ck_assert_msg(bad != NULL, "chunk %zu: %s not refused", chunk, want_bad);
            ck_assert_str_eq(bad, want_bad);
        } else {
            ck_assert_msg(bad == NULL, "chunk %zu: refused: %s", chunk, bad);
            ck_assert_msg(end == want_end, "chunk %zu: end %zu, want %zu", chunk, end, want_end);
        }
    }
}

START_TEST(scan_header_blocks)
{
    static const char ok[] = "Host: x\r\nX-A: a b\tc\r\n\r\n{\"body\"}";
    scan_all_chunkings(ok, sizeof(ok) - 1, sizeof(ok) - 1 - 8, NULL);
    static const char bare_lf[] = "Host: x\nX-A: 1\n\nrest";
    scan_all_chunkings(bare_lf, sizeof(bare_lf) - 1, sizeof(bare_lf) - 1 - 4, NULL);
    static const char empty[] = "\r\nGET";
    scan_all_chunkings(empty, sizeof(empty) - 1, 2, NULL);
    static const char incomplete[] = "Host: x\r\nX-A: 1\r\n";
    scan_all_chunkings(incomplete, sizeof(incomplete) - 1, 0, NULL);
}
END_TEST

START_TEST(scan_refusals)
{
    static const char nul[] = "Host: x\r\nX-A: a\0b\r\n\r\n";
    scan_all_chunkings(nul, sizeof(nul) - 1, 0, "NUL in a header line");
    static const char fold_tab[] = "Host: x\r\nX-A: a\r\n\tb\r\n\r\n";
    scan_all_chunkings(fold_tab, sizeof(fold_tab) - 1, 0, "folded header line (obs-fold)");
    static const char fold_sp[] = "Host: x\r\nX-A: a\r\n b\r\n\r\n";
    scan_all_chunkings(fold_sp, sizeof(fold_sp) - 1, 0, "folded header line (obs-fold)");
    static const char bare_cr[] = "Host: x\rX-A: a\r\n\r\n";
    scan_all_chunkings(bare_cr, sizeof(bare_cr) - 1, 0, "CR not followed by LF in a header line");
    static const char cr_end[] = "Host: x\r\n\rX";
    scan_all_chunkings(cr_end, sizeof(cr_end) - 1, 0, "CR not followed by LF in the header block");
    /* bytes after the end are not looked at */
    static const char after[] = "Host: x\r\n\r\n\0\0";
    scan_all_chunkings(after, sizeof(after) - 1, sizeof(after) - 1 - 2, NULL);
}
END_TEST


/* A chunked body scanned in pieces of every size gives the same answer. */
static void chunked_all_pieces(const char *body, size_t len, const char *want_bad)
{
    for (size_t piece = 1; piece <= len; piece++) {
        mb_chunk_scan sc = {0};
        const char *bad = NULL;
        for (size_t off = 0; off < len && bad == NULL; off += piece) {
            size_t n = len - off < piece ? len - off : piece;
            bad = framing_scan_chunked(&sc, body + off, n);
        }
        if (want_bad) {
            ck_assert_msg(bad != NULL, "piece %zu: %s not refused", piece, want_bad);
            ck_assert_str_eq(bad, want_bad);
        } else {
            ck_assert_msg(bad == NULL, "piece %zu: refused: %s", piece, bad);
        }
    }
}

START_TEST(scan_chunked_bodies)
{
    static const char ok[] = "5\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
    chunked_all_pieces(ok, sizeof(ok) - 1, NULL);
    /* the largest size that fits (its data never comes), leading zeros */
    static const char big[] = "7fffffffffffffff\r\nab";
    chunked_all_pieces(big, sizeof(big) - 1, NULL);
    static const char zeros[] = "00000000000000000000005\r\nhello\r\n0\r\n\r\n";
    chunked_all_pieces(zeros, sizeof(zeros) - 1, NULL);
    /* after the last chunk: the trailer section (and anything) is not looked at */
    static const char trailer[] = "0\r\nX-T: 1\r\n\r\n\0garbage";
    chunked_all_pieces(trailer, sizeof(trailer) - 1, NULL);
    /* chunk data may hold anything, a "size line" included */
    static const char data[] = "15\r\n\r\n10000000000000005\r\n\r\n0\r\n\r\n";
    chunked_all_pieces(data, sizeof(data) - 1, NULL);
}
END_TEST

START_TEST(scan_chunked_refusals)
{
    /* 2^64 + 5 wraps to 5 in libevhtp: the smuggling case */
    static const char wrap[] = "10000000000000005\r\nhello\r\n0\r\n\r\n";
    chunked_all_pieces(wrap, sizeof(wrap) - 1, "chunk size too large");
    static const char ffff[] = "ffffffffffffffffff\r\n";
    chunked_all_pieces(ffff, sizeof(ffff) - 1, "chunk size too large");
    static const char over[] = "8000000000000000\r\n";
    chunked_all_pieces(over, sizeof(over) - 1, "chunk size too large");
    const char *line = "malformed chunk size line (hex digits then CRLF; no chunk extensions)";
    static const char ext[] = "5;a=b\r\nhello\r\n0\r\n\r\n";
    chunked_all_pieces(ext, sizeof(ext) - 1, line);
    static const char neg[] = "-5\r\nhello\r\n";
    chunked_all_pieces(neg, sizeof(neg) - 1, line);
    static const char empty[] = "\r\nhello\r\n";
    chunked_all_pieces(empty, sizeof(empty) - 1, line);
    static const char space[] = "5 \r\nhello\r\n";
    chunked_all_pieces(space, sizeof(space) - 1, line);
    static const char bare_cr[] = "5\rhello\r\n";
    chunked_all_pieces(bare_cr, sizeof(bare_cr) - 1,
                       "malformed chunk size line (CR not followed by LF)");
    static const char long_data[] = "3\r\nhello\r\n";
    chunked_all_pieces(long_data, sizeof(long_data) - 1, "chunk data not followed by CRLF");
    static const char lf_only[] = "5\r\nhello\n0\r\n\r\n";
    chunked_all_pieces(lf_only, sizeof(lf_only) - 1, "chunk data not followed by CRLF");
    /* the second size line, after a good chunk */
    static const char second[] = "5\r\nhello\r\n1ffffffffffffffff\r\n";
    chunked_all_pieces(second, sizeof(second) - 1, "chunk size too large");
}
END_TEST


static Suite *framing_suite(void)
{
    Suite *s = suite_create("framing");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, no_body);
    tcase_add_test(tc, content_length_only);
    tcase_add_test(tc, chunked_only);
    tcase_add_test(tc, identical_duplicate_content_length);
    tcase_add_test(tc, http10_without_host);
    tcase_add_test(tc, cl_and_te);
    tcase_add_test(tc, differing_content_lengths);
    tcase_add_test(tc, bad_content_length);
    tcase_add_test(tc, bad_transfer_encodings);
    tcase_add_test(tc, te_in_http10);
    tcase_add_test(tc, host_rules);
    tcase_add_test(tc, bad_header_names);
    tcase_add_test(tc, bad_header_values);
    tcase_add_test(tc, scan_header_blocks);
    tcase_add_test(tc, scan_refusals);
    tcase_add_test(tc, scan_chunked_bodies);
    tcase_add_test(tc, scan_chunked_refusals);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(framing_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
