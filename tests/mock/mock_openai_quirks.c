/*
 * The mock provider's openai_quirks wire format (to be written): see mock.h for the shared scenario.
 */
#include "mock.h"

int
mock_openai_quirks_route(h2o_req_t *req)
{
    return 0;
}
