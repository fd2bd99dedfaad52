// Command otelcol-llm is the otel-llm collector: an OpenTelemetry Collector built
// with only the components that the shipped configs in collector-config/ use
// (listed in components.go). build.sh next to this file builds it.
package main

import (
	"fmt"
	"os"
	"sort"

	"github.com/spf13/cobra"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/otelcol"
)

// The collector release every component comes from (core stable modules are
// v1.67.0 in the same release). go.mod holds the real pins; the tests check
// that these strings agree with it.
const (
	coreVersion   = "v0.161.0"
	stableVersion = "v1.67.0"
	version       = "0.161.0"
)

func main() {
	settings := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{
			Command:     "otelcol-llm",
			Description: "OpenTelemetry Collector for otel-llm: only the components its configs use",
			Version:     version,
		},
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				// env: the ${env:...} endpoints in the configs; file: --config=FILE;
				// yaml: --set. Configs are files, so no http(s) provider.
				ProviderFactories: []confmap.ProviderFactory{
					envprovider.NewFactory(),
					fileprovider.NewFactory(),
					yamlprovider.NewFactory(),
				},
			},
		},
		ProviderModules: map[string]string{
			"env":  "go.opentelemetry.io/collector/confmap/provider/envprovider " + stableVersion,
			"file": "go.opentelemetry.io/collector/confmap/provider/fileprovider " + stableVersion,
			"yaml": "go.opentelemetry.io/collector/confmap/provider/yamlprovider " + stableVersion,
		},
	}
	cmd := otelcol.NewCommand(settings)
	cmd.AddCommand(aliasesCommand())
	if err := cmd.Execute(); err != nil {
		// cobra has printed the error already.
		os.Exit(1)
	}
}

// aliasesCommand prints, as YAML by kind, the deprecated type names this build still
// accepts and the current name each stands for (contrib 0.161 renamed, for example,
// spanmetrics to span_metrics). `components` lists only the current names.
func aliasesCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "aliases",
		Short: "Outputs the deprecated component type names this build accepts, with their current names",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := components()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, k := range []struct {
				kind    string
				aliases map[string]string
			}{
				{"receivers", aliasesOf(f.Receivers)},
				{"processors", aliasesOf(f.Processors)},
				{"exporters", aliasesOf(f.Exporters)},
				{"connectors", aliasesOf(f.Connectors)},
				{"extensions", aliasesOf(f.Extensions)},
			} {
				if len(k.aliases) == 0 {
					fmt.Fprintf(out, "%s: {}\n", k.kind)
					continue
				}
				fmt.Fprintf(out, "%s:\n", k.kind)
				names := make([]string, 0, len(k.aliases))
				for name := range k.aliases {
					names = append(names, name)
				}
				sort.Strings(names)
				for _, name := range names {
					fmt.Fprintf(out, "    %s: %s\n", name, k.aliases[name])
				}
			}
			return nil
		},
	}
}

// aliasesOf maps each key of a factory map that is not its factory's own type (a
// deprecated alias, registered by otelcol.MakeFactoryMap) to that type.
func aliasesOf[F component.Factory](factories map[component.Type]F) map[string]string {
	aliases := map[string]string{}
	for typ, f := range factories {
		if typ != f.Type() {
			aliases[typ.String()] = f.Type().String()
		}
	}
	return aliases
}
