/* nbdkit-remap unit tests: CRC-32C (crc32c.c).
 *
 * Covers the published check values, agreement with a plain bitwise
 * reference implementation over many lengths (so every tail length of
 * the slicing-by-8 loop is exercised), incremental updates split at
 * random points giving the one-shot result, and buffers at every
 * alignment giving the same result as an aligned copy.
 */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "crc32c.h"

/* The textbook bit-at-a-time CRC-32C, independent of crc32c.c. */
static uint32_t
reference_crc32c (const void *buf, size_t len)
{
  const unsigned char *p = buf;
  uint32_t crc = 0xFFFFFFFF;

  while (len--) {
    crc ^= *p++;
    for (int k = 0; k < 8; k++)
      crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78 : crc >> 1;
  }
  return ~crc;
}

static void
fill_random (unsigned char *buf, size_t len, unsigned seed)
{
  srandom (seed);
  for (size_t i = 0; i < len; i++)
    buf[i] = random ();
}

START_TEST (test_known_vectors)
{
  const char *digits = "123456789";
  unsigned char zeros[32], ones[32], ascending[32];

  memset (zeros, 0, sizeof zeros);
  memset (ones, 0xff, sizeof ones);
  for (int i = 0; i < 32; i++)
    ascending[i] = i;

  ck_assert_uint_eq (crc32c_update (0, digits, strlen (digits)), 0xE3069283);
  ck_assert_uint_eq (crc32c_update (0, zeros, sizeof zeros), 0x8A9136AA);
  /* RFC 3720 (iSCSI) appendix B.4. */
  ck_assert_uint_eq (crc32c_update (0, ones, sizeof ones), 0x62A8AB43);
  ck_assert_uint_eq (crc32c_update (0, ascending, sizeof ascending),
                     0x46DD794E);
  /* No data leaves the CRC unchanged. */
  ck_assert_uint_eq (crc32c_update (0, digits, 0), 0);
  ck_assert_uint_eq (crc32c_update (0x12345678, digits, 0), 0x12345678);
}
END_TEST

START_TEST (test_matches_reference)
{
  unsigned char buf[1100];

  fill_random (buf, sizeof buf, 1);
  for (size_t len = 0; len <= sizeof buf; len += len < 80 ? 1 : 37)
    ck_assert_msg (crc32c_update (0, buf, len) ==
                   reference_crc32c (buf, len),
                   "length %zu differs from the reference", len);
}
END_TEST

START_TEST (test_incremental)
{
  const size_t len = 4096 + 13;
  unsigned char *buf = malloc (len);
  uint32_t whole;

  ck_assert_ptr_nonnull (buf);
  fill_random (buf, len, 2);
  whole = crc32c_update (0, buf, len);
  ck_assert_uint_eq (whole, reference_crc32c (buf, len));

  srandom (3);
  for (int round = 0; round < 500; round++) {
    size_t done = 0;
    uint32_t crc = 0;

    /* Split into pieces of random length, some of them empty. */
    while (done < len) {
      size_t piece = random () % (round < 250 ? 17 : 700);
      if (piece > len - done)
        piece = len - done;
      crc = crc32c_update (crc, buf + done, piece);
      done += piece;
    }
    ck_assert_msg (crc == whole, "round %d: incremental CRC %08x, "
                   "one-shot %08x", round, crc, whole);
  }
  free (buf);
}
END_TEST

START_TEST (test_unaligned)
{
  const size_t len = 1000;
  unsigned char *src = malloc (len), *big = malloc (len + 16);
  uint32_t expect;

  ck_assert_ptr_nonnull (src);
  ck_assert_ptr_nonnull (big);
  fill_random (src, len, 4);
  expect = crc32c_update (0, src, len);
  for (size_t align = 0; align < 16; align++) {
    memset (big, 0xa5, len + 16);
    memcpy (big + align, src, len);
    ck_assert_msg (crc32c_update (0, big + align, len) == expect,
                   "misaligned by %zu", align);
    /* A short buffer, all tail. */
    ck_assert_uint_eq (crc32c_update (0, big + align, 7),
                       reference_crc32c (src, 7));
  }
  free (src);
  free (big);
}
END_TEST

START_TEST (test_detects_single_bit)
{
  unsigned char buf[256];
  uint32_t good;

  fill_random (buf, sizeof buf, 5);
  good = crc32c_update (0, buf, sizeof buf);
  for (size_t i = 0; i < sizeof buf; i++)
    for (int bit = 0; bit < 8; bit++) {
      buf[i] ^= 1 << bit;
      ck_assert_uint_ne (crc32c_update (0, buf, sizeof buf), good);
      buf[i] ^= 1 << bit;
    }
  ck_assert_uint_eq (crc32c_update (0, buf, sizeof buf), good);
}
END_TEST

static Suite *
crc32c_suite (void)
{
  Suite *s = suite_create ("crc32c");
  TCase *tc = tcase_create ("core");

  tcase_add_test (tc, test_known_vectors);
  tcase_add_test (tc, test_matches_reference);
  tcase_add_test (tc, test_incremental);
  tcase_add_test (tc, test_unaligned);
  tcase_add_test (tc, test_detects_single_bit);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (crc32c_suite ());
  int failed;

  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
