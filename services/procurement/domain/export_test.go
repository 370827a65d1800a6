package domain

import (
	"maps"

	"github.com/furrow/furrow/pkg/cowmap"
)

// PlainDeliveries returns an order's deliveries as a plain map, so that
// tests can compare orders by content (copies lay out their cowmaps
// differently).
func PlainDeliveries(m cowmap.Map[string, line]) map[string]line { return maps.Collect(m.All()) }
