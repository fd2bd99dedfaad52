package main

// The components of otelcol-llm: exactly the types that collector-config/otelcol.yaml
// and collector-config/gateway/*.yaml name, plus the debug exporter for looking at
// data by hand. tests/test_collector_distribution.py fails when a config names a
// type missing here, or when a type here is used by no config.

import (
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/connector/forwardconnector"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/debugexporter"
	"go.opentelemetry.io/collector/exporter/otlpexporter"
	"go.opentelemetry.io/collector/exporter/otlphttpexporter"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/batchprocessor"
	"go.opentelemetry.io/collector/processor/memorylimiterprocessor"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"

	"github.com/open-telemetry/opentelemetry-collector-contrib/connector/spanmetricsconnector"
	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/loadbalancingexporter"
	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/healthcheckextension"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/k8sattributesprocessor"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/resourcedetectionprocessor"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/resourceprocessor"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/tailsamplingprocessor"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/transformprocessor"
	"github.com/open-telemetry/opentelemetry-collector-contrib/receiver/prometheusreceiver"
)

const (
	core    = "go.opentelemetry.io/collector/"
	contrib = "github.com/open-telemetry/opentelemetry-collector-contrib/"
)

// kind is one of the five component kinds: each factory with the Go module
// (path and version) it comes from, printed by `otelcol-llm components`.
type kind[F component.Factory] []struct {
	factory F
	module  string
}

// build turns the list into the maps otelcol.Factories holds. MakeFactoryMap
// also registers a factory's deprecated alias (otlp for otlp_grpc, otlphttp for
// otlp_http), so the alias gets the module too.
func (k kind[F]) build() (map[component.Type]F, map[component.Type]string, error) {
	factories := make([]F, 0, len(k))
	for _, c := range k {
		factories = append(factories, c.factory)
	}
	byType, err := otelcol.MakeFactoryMap(factories...)
	if err != nil {
		return nil, nil, err
	}
	modules := make(map[component.Type]string, len(byType))
	for typ, f := range byType {
		for _, c := range k {
			if c.factory.Type() == f.Type() {
				modules[typ] = c.module
			}
		}
	}
	return byType, modules, nil
}

var receivers = kind[receiver.Factory]{
	{otlpreceiver.NewFactory(), core + "receiver/otlpreceiver " + coreVersion},
	{prometheusreceiver.NewFactory(), contrib + "receiver/prometheusreceiver " + coreVersion},
}

var processors = kind[processor.Factory]{
	{memorylimiterprocessor.NewFactory(), core + "processor/memorylimiterprocessor " + coreVersion},
	{batchprocessor.NewFactory(), core + "processor/batchprocessor " + coreVersion},
	{resourcedetectionprocessor.NewFactory(), contrib + "processor/resourcedetectionprocessor " + coreVersion},
	{resourceprocessor.NewFactory(), contrib + "processor/resourceprocessor " + coreVersion},
	{transformprocessor.NewFactory(), contrib + "processor/transformprocessor " + coreVersion},
	{tailsamplingprocessor.NewFactory(), contrib + "processor/tailsamplingprocessor " + coreVersion},
	// k8sattributes went stable in this release: its module is v1.0.0.
	{k8sattributesprocessor.NewFactory(), contrib + "processor/k8sattributesprocessor v1.0.0"},
}

var connectors = kind[connector.Factory]{
	{spanmetricsconnector.NewFactory(), contrib + "connector/spanmetricsconnector " + coreVersion},
	{forwardconnector.NewFactory(), core + "connector/forwardconnector " + coreVersion},
}

var exporters = kind[exporter.Factory]{
	{otlpexporter.NewFactory(), core + "exporter/otlpexporter " + coreVersion},
	{otlphttpexporter.NewFactory(), core + "exporter/otlphttpexporter " + coreVersion},
	{loadbalancingexporter.NewFactory(), contrib + "exporter/loadbalancingexporter " + coreVersion},
	{debugexporter.NewFactory(), core + "exporter/debugexporter " + coreVersion},
}

var extensions = kind[extension.Factory]{
	{healthcheckextension.NewFactory(), contrib + "extension/healthcheckextension " + coreVersion},
}

func components() (otelcol.Factories, error) {
	f := otelcol.Factories{Telemetry: otelconftelemetry.NewFactory()}
	var err error
	if f.Receivers, f.ReceiverModules, err = receivers.build(); err != nil {
		return otelcol.Factories{}, err
	}
	if f.Processors, f.ProcessorModules, err = processors.build(); err != nil {
		return otelcol.Factories{}, err
	}
	if f.Connectors, f.ConnectorModules, err = connectors.build(); err != nil {
		return otelcol.Factories{}, err
	}
	if f.Exporters, f.ExporterModules, err = exporters.build(); err != nil {
		return otelcol.Factories{}, err
	}
	if f.Extensions, f.ExtensionModules, err = extensions.build(); err != nil {
		return otelcol.Factories{}, err
	}
	return f, nil
}
