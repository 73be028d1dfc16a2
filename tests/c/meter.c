/* The energy meter through the C ABI: it starts, counts a busy loop's CPU time, says where its joules
   come from, restarts, and refuses NULL without writing anything. */
#include <string.h>
#include <time.h>
#include "check.h"

int main(void) {
    greenai_meter *meter = NULL;
    CHECK_OK(greenai_meter_new(&meter));
    CHECK(meter != NULL);

    /* About 0.2 s of CPU time (clock() counts this process's CPU time). */
    volatile double sink = 0.0;
    clock_t begin = clock();
    while ((double)(clock() - begin) / CLOCKS_PER_SEC < 0.2) {
        for (int i = 0; i < 10000; i++) sink += (double)i * 0.5;
    }

    greenai_meter_reading r;
    memset(&r, 0, sizeof r);
    CHECK_OK(greenai_meter_read(meter, &r));
    CHECK(r.source == GREENAI_METER_RAPL || r.source == GREENAI_METER_ESTIMATE);
    CHECK(r.joules > 0.0 && r.wall_seconds >= 0.15 && r.cpu_seconds >= 0.15);
    if (r.source == GREENAI_METER_ESTIMATE) {
        /* The estimate is at least CPU time times the per-core power. */
        CHECK(r.watts_per_core > 0.0 && r.joules >= r.cpu_seconds * r.watts_per_core);
    }

    CHECK_OK(greenai_meter_restart(meter));
    greenai_meter_reading again;
    CHECK_OK(greenai_meter_read(meter, &again));
    CHECK(again.wall_seconds < r.wall_seconds && again.cpu_seconds <= r.cpu_seconds);

    greenai_meter_reading untouched;
    memset(&untouched, 0x5A, sizeof untouched);
    greenai_meter_reading copy = untouched;
    CHECK_STATUS(greenai_meter_read(NULL, &untouched), GREENAI_ERR_NULL_POINTER);
    CHECK(untouched.source == copy.source && memcmp(&untouched.joules, &copy.joules, sizeof copy.joules) == 0);
    CHECK_STATUS(greenai_meter_read(meter, NULL), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_meter_new(NULL), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_meter_restart(NULL), GREENAI_ERR_NULL_POINTER);

    greenai_meter_free(meter);
    greenai_meter_free(NULL);
    (void)sink;
    CHECK_DONE();
}
