/*
 * The price of a request, in nano-USD, from token counts and the snapshot's price table. Integers
 * throughout and one truncation at the end, so that a report summed from usage rows is exact to the
 * nano-dollar (docs/api.md, "Prices").
 */
#include "accounting/usage.h"

int64_t
dp_usage_cost(const dp_price_t *price, int64_t input, int64_t cached_input, int64_t output)
{
    if (price == NULL)
        return 0;
    if (cached_input > input)
        cached_input = input;
    int64_t cached_price = price->cached_input ? price->cached_input : price->input;
    /* micro-USD per Mtok x tokens = 1e-12 USD; / 1000 = nano-USD */
    return ((input - cached_input) * price->input + cached_input * cached_price + output * price->output) / 1000;
}
