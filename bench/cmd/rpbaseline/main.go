// Command rpbaseline is Go's stock net/http/httputil.ReverseProxy in front
// of one HTTP/1.1 backend with nothing added: the reference point the L7
// saturation target is stated against ("Go's stock httputil.ReverseProxy
// reaches about 32% of direct"). Measured beside direct in the same run
// (benchrun's go-rp target), it shows how hard this machine's harness is
// compared with the one the target came from.
//
// It is configured as a fair peer: the upstream transport keeps as many
// idle connections as the load uses (Go's default keeps two per host, which
// would measure connection churn instead of proxying), and nothing logs
// per request.
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18700", "address to serve on")
	backend := flag.String("backend", "", "the backend's host:port")
	flag.Parse()
	if *backend == "" {
		log.Fatal("rpbaseline: -backend host:port is required")
	}
	u, err := url.Parse("http://" + *backend)
	if err != nil {
		log.Fatalf("rpbaseline: -backend %q: %v", *backend, err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     5 * time.Minute,
	}
	srv := &http.Server{Addr: *listen, Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
