package router

import "github.com/penstock-dev/penstock/internal/exchange"

// Params holds the path parameters of a matched route: the ":name" segments
// and the "*name" catch-all, in path order. Values are substrings of the
// path given to [Router.Lookup], so they stay valid as long as that string
// does. The type is the exchange's, so that an exchange carries the
// parameters of its route without the exchange package knowing the router.
type Params = exchange.Params
