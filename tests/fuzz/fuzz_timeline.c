/*
 * fuzz_timeline.c - feeds arbitrary bytes to the timeline history reader
 * (obx_timeline_end, startpoint.h) as a history file's text; the first
 * byte picks the timeline asked for.  The server sends that text
 * (TIMELINE_HISTORY) and the start point is decided on it.  Built as a
 * libFuzzer target with -Dfuzzing=true (clang), and as a corpus replayer
 * (replay_main.c) that the normal test suite runs.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "outboxd/startpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint32_t timeline = data[0] % 8;
	char *history = malloc(size);
	memcpy(history, data + 1, size - 1);
	history[size - 1] = '\0';
	obx_lsn_t end;
	(void)obx_timeline_end(history, timeline, &end);
	free(history);
	return 0;
}
