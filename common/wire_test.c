/* Unit tests for the signed envelope: round trip, wrong secret, tampering, wrong type. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "tollgate/wire.h"
#include "tollgate.pb-c.h"

static void
test_round_trip_and_tamper(void **state)
{
    tg_wire_key_t k1, k2;
    assert_int_equal(tg_wire_key_init(&k1, "0123456789abcdef-one"), 0);
    assert_int_equal(tg_wire_key_init(&k2, "0123456789abcdef-two"), 0);
    assert_int_equal(tg_wire_key_init(&k2, "short"), -1);
    assert_int_equal(tg_wire_key_init(&k2, "0123456789abcdef-two"), 0);

    Tollgate__Heartbeat hb = TOLLGATE__HEARTBEAT__INIT;
    hb.version = 42;
    nng_msg *msg;
    assert_int_equal(tg_wire_pack(&k1, TOLLGATE__MSG_TYPE__MSG_HEARTBEAT, &hb.base, &msg), 0);

    tg_wire_msg_t m;
    assert_int_equal(tg_wire_unpack(&k1, nng_msg_body(msg), nng_msg_len(msg), &m), 0);
    assert_int_equal(m.type, TOLLGATE__MSG_TYPE__MSG_HEARTBEAT);
    Tollgate__Heartbeat *back = tollgate__heartbeat__unpack(NULL, m.len, m.payload);
    assert_non_null(back);
    assert_int_equal(back->version, 42);
    tollgate__heartbeat__free_unpacked(back, NULL);
    tg_wire_msg_dispose(&m);

    assert_int_equal(tg_wire_unpack(&k2, nng_msg_body(msg), nng_msg_len(msg), &m), -1);
    uint8_t *body = nng_msg_body(msg);
    body[nng_msg_len(msg) / 2] ^= 0x40;
    assert_int_equal(tg_wire_unpack(&k1, nng_msg_body(msg), nng_msg_len(msg), &m), -1);
    assert_int_equal(tg_wire_unpack(&k1, "garbage", 7, &m), -1);
    nng_msg_free(msg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_tamper),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
