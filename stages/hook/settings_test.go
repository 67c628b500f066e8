package main

import (
	"testing"

	"zoomarchive/shared/stagetest"
)

// The settings template lists every setting with its default.
func TestEnvExampleListsEverySetting(t *testing.T) {
	stagetest.EnvExample(t, settings, "NATS_CREDS", "METRICS_ADDR")
}
