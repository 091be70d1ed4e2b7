package sdktest_test

import (
	"testing"

	"github.com/mailchaos/mailchaos/faults/grayfailure"
	"github.com/mailchaos/mailchaos/plugins/sdk/sdktest"
)

// The built-in gray-failure fault passes the kit, as every plugin must.
func TestGrayFailureConforms(t *testing.T) {
	sdktest.Run(t, grayfailure.New(), sdktest.Config{Params: map[string]string{"mode": "stall-after"}})
}
