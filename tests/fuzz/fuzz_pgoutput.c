/*
 * fuzz_pgoutput.c - feeds arbitrary bytes to the pgoutput decoder as a
 * stream of replication messages (each a 2-byte big-endian length and its
 * bytes, so Relation messages can precede the rows that use them), and
 * whatever decodes on through the router and the Avro envelope
 * (fuzz_common.c).  A fresh decoder per input keeps runs reproducible.
 * Built as a libFuzzer target with -Dfuzzing=true (clang), and as a corpus
 * replayer (replay_main.c) that the normal test suite runs; the corpus
 * starts from messages captured from PostgreSQL 15
 * (tests/data/pgoutput_basic.tsv).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[1024];
	obx_change_t change;
	obx_decoder_t *decoder =
	    obx_decoder_new(fuzz_config("pgoutput"), err, sizeof(err));
	if (!decoder)
		abort();
	while (size >= 2) {
		size_t len = (size_t)data[0] << 8 | data[1];
		data += 2, size -= 2;
		if (len > size)
			len = size;
		/* a copy of exactly len bytes: ASan sees any over-read */
		char *msg = malloc(len ? len : 1);
		memcpy(msg, data, len);
		obx_err_t e = obx_decoder_decode(decoder, msg, len, 0x1234,
						 &change, err, sizeof(err));
		if (e == OBX_OK)
			fuzz_route_and_encode(&change);
		free(msg);
		data += len, size -= len;
	}
	obx_decoder_destroy(decoder);
	return 0;
}
