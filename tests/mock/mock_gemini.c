/*
 * The mock provider's gemini wire format (to be written): see mock.h for the shared scenario.
 */
#include "mock.h"

int
mock_gemini_route(h2o_req_t *req)
{
    return 0;
}
