/* Minimal assertions shared by the C tests: print the failing line and the library's message. */
#ifndef GREENAI_TEST_CHECK_H
#define GREENAI_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include "greenai.h"

static int check_failures = 0;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, \
                    #cond, greenai_last_error_message());                                   \
            check_failures++;                                                                \
        }                                                                                    \
    } while (0)

#define CHECK_STATUS(call, expected)                                                        \
    do {                                                                                    \
        greenai_status check_got_ = (call);                                                 \
        if (check_got_ != (expected)) {                                                     \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: %s)\n", __FILE__, \
                    __LINE__, #call, greenai_status_str(check_got_),                         \
                    greenai_status_str(expected), greenai_last_error_message());            \
            check_failures++;                                                               \
        }                                                                                   \
    } while (0)

#define CHECK_OK(call) CHECK_STATUS(call, GREENAI_OK)

#define CHECK_DONE()                                                     \
    do {                                                                 \
        if (check_failures) {                                            \
            fprintf(stderr, "%d check(s) failed\n", check_failures);     \
            return EXIT_FAILURE;                                         \
        }                                                                \
        return EXIT_SUCCESS;                                             \
    } while (0)

#endif
