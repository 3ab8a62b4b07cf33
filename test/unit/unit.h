/*
 * unit.h - common includes for the C unit tests (cmocka).
 */
#ifndef SP_TEST_UNIT_H
#define SP_TEST_UNIT_H

/* cmocka needs these before its own header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#endif
