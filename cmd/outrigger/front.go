package main

import (
	"github.com/outrigger-mesh/outrigger/proxy"
	"github.com/outrigger-mesh/outrigger/proxy/route"
)

// frontListener builds the listener of an http or grpc outbound with tls,
// or of an auto outbound: the HTTP engine (hc, table, ups) behind TLS
// termination and/or protocol detection, and the certificate source it
// serves (nil without tls), which the caller runs and reloads. An auto
// listener forwards what is not HTTP to its service, whose balancer is in
// ups (services lists it first). Its idle_timeout bounds those TCP
// connections; HTTP keep-alive keeps the engine's default.
func frontListener(cfg *Config, o OutboundConfig, hc proxy.HTTPConfig, table *route.Table, ups proxy.Upstreams,
	popts proxy.Options) (*proxy.FrontListener, *proxy.CertFiles, error) {
	fc := proxy.FrontConfig{HTTP: hc}
	var certs *proxy.CertFiles
	if o.TLS != nil {
		var err error
		if certs, err = proxy.NewCertFiles(cfg.tlsFiles(o.TLS), popts); err != nil {
			return nil, nil, err
		}
		fc.TLS = certs
	}
	var fallback proxy.Upstream
	if o.Protocol == "auto" {
		fc.HTTP.IdleTimeout = 0
		fc.Sniff = &proxy.SniffConfig{
			Timeout: o.SniffTimeout.D(),
			TCP: proxy.TCPConfig{
				ConnectTimeout:  o.ConnectTimeout.D(),
				IdleTimeout:     o.IdleTimeout.D(),
				ConnectAttempts: o.ConnectAttempts,
			},
		}
		fallback = ups[o.Service]
	}
	return proxy.NewFrontListener(fc, table, ups, fallback, popts), certs, nil
}
