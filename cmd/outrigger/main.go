// Command outrigger is the Outrigger sidecar proxy: it reads outrigger.yaml,
// discovers where upstream services run, and carries the application's
// connections there.
//
// This package is the wiring: it owns the command line (urfave/cli/v2), the
// configuration file format (the only yaml/json tags in the project), the
// process's signals, and the construction of every package below it from the
// config. Nothing below cmd reads files, flags or the environment on its own.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

func main() {
	if err := newApp(os.Stdout, os.Stderr).Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "outrigger: "+strings.ReplaceAll(err.Error(), "\n", "\n  "))
		os.Exit(1)
	}
}

const configHelp = `The config file (outrigger.yaml) names this node, its discovery sources and
its listeners. A small one:

   node: {name: web-1, namespace: demo}
   discovery:
     - {name: local, file: {path: services.yaml}}
   outbound:
     - {name: echo, listen: 127.0.0.1:9000, service: echo.demo, balancer: round_robin}

Relative paths in it are relative to the file. The full reference is
docs/configuration.md; examples/local/ holds a working demo.`

func newApp(stdout, stderr io.Writer) *cli.App {
	configFlag := &cli.StringFlag{
		Name:    "config",
		Aliases: []string{"c"},
		Usage:   "path of the config `FILE` (outrigger.yaml)",
		EnvVars: []string{"OUTRIGGER_CONFIG"},
	}
	return &cli.App{
		Name:      "outrigger",
		Usage:     "a sidecar proxy that finds your services and carries your traffic",
		Version:   buildVersion(),
		Writer:    stdout,
		ErrWriter: stderr,
		Description: `Outrigger runs beside an application and carries its connections to the
services it calls. It learns where those services run from the systems that
already know (a static file now; Kubernetes, Consul and DNS in time), balances
each connection or HTTP request over their endpoints, retries safely within a
budget, cuts off failing endpoints and routes, and drains gracefully on
SIGTERM.

Start with the local demo:   make run
Check a config file:          outrigger validate -c outrigger.yaml
Run the proxy:                outrigger run -c outrigger.yaml

While it runs, the admin server (default 127.0.0.1:15000) answers /ready,
/live, /config, /endpoints, /upstreams and /routes as JSON, /metrics for
Prometheus, and /why?host=...&path=... to explain where a request would go and
why (docs/admin.md). A request sent with "x-outrigger-debug: why" from
loopback gets its own trail back in an X-Outrigger-Why header.`,
		HideHelpCommand: true,
		Commands: []*cli.Command{
			{
				Name:      "run",
				Usage:     "run the proxy with a config file",
				UsageText: "outrigger run -c outrigger.yaml [--log-level debug] [--log-format json]",
				Description: configHelp + `

Signals: SIGHUP reloads the config file (as does saving it), re-reads the
discovery and certificate files and reopens the access log file (for log
rotation); a config that fails validation is logged and the running one
stays. SIGTERM or SIGINT drains (the admin /ready turns 503, listeners stop
accepting, open connections get up to drain.timeout to finish) and exits 0.
A second SIGTERM or SIGINT exits at once.`,
				Flags: []cli.Flag{
					configFlag,
					&cli.StringFlag{
						Name:    "log-level",
						Value:   "info",
						Usage:   "log `LEVEL`: debug, info, warn or error",
						EnvVars: []string{"OUTRIGGER_LOG_LEVEL"},
					},
					&cli.StringFlag{
						Name:    "log-format",
						Value:   "text",
						Usage:   "log `FORMAT`: text (key=value) or json (one object a line)",
						EnvVars: []string{"OUTRIGGER_LOG_FORMAT"},
					},
				},
				Action: func(c *cli.Context) error {
					logger, err := newLogger(stderr, c.String("log-level"), c.String("log-format"))
					if err != nil {
						return err
					}
					cfg, err := loadFlagConfig(c)
					if err != nil {
						return err
					}
					return runProxy(c.Context, cfg, logger)
				},
			},
			{
				Name:      "validate",
				Usage:     "check a config file and exit: 0 if good, 1 with every problem listed",
				UsageText: "outrigger validate -c outrigger.yaml",
				Description: configHelp + `

Each problem is printed as FILE:LINE: FIELD: WHAT, e.g.
   outrigger.yaml:7: outbound[0].balancer: unknown balancer "rr" (want round_robin or least_conn)`,
				Flags: []cli.Flag{configFlag},
				Action: func(c *cli.Context) error {
					cfg, err := loadFlagConfig(c)
					if err != nil {
						return err
					}
					fmt.Fprintf(stdout, "%s: ok (%d discovery sources, %d outbound and %d inbound listeners)\n",
						cfg.path, len(cfg.Discovery), len(cfg.Outbound), len(cfg.Inbound))
					return nil
				},
			},
			{
				Name:  "version",
				Usage: "print the version and exit",
				Action: func(c *cli.Context) error {
					fmt.Fprintln(stdout, "outrigger", buildVersion())
					return nil
				},
			},
		},
	}
}

func loadFlagConfig(c *cli.Context) (*Config, error) {
	path := c.String("config")
	if path == "" {
		return nil, errors.New("no config file: pass -c FILE or set OUTRIGGER_CONFIG (try examples/local/outrigger.yaml)")
	}
	return LoadConfig(path)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
