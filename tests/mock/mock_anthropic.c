/*
 * The mock provider's anthropic wire format (to be written): see mock.h for the shared scenario.
 */
#include "mock.h"

int
mock_anthropic_route(h2o_req_t *req)
{
    return 0;
}
