// Package file is the discovery source for a static YAML file of services
// and their endpoints: legacy hosts, local demos, anything no registry knows.
//
// Place in the data flow: a Source reads one file and reports each service
// in it to a discovery.Sink (the catalog) as a complete Update, then watches
// the file and reports every good edit. Parse is the pure conversion from
// bytes to Updates, used by Run and by "outrigger validate".
//
// # File format
//
//	# services.yaml
//	services:
//	  - name: echo.demo            # service key name.namespace, DNS labels
//	    endpoints:
//	      - address: 127.0.0.1     # IP literal, v4 or v6; or ip:port, e.g. 127.0.0.1:9101 or [::1]:9101
//	        port: 9101             # 1..65535; required unless address has the port
//	        weight: 1              # optional, 1..1000, default 1
//	        zone: local-a          # optional
//	        cluster: local         # optional
//	        state: ready           # optional: ready (default) | draining | not_ready
//	        spiffe_id: spiffe://example.org/ns/demo/sa/echo   # optional
//	        id: echo-1             # optional, default address:port ("[::1]:9101" for IPv6)
//	        metadata: {version: v1}  # optional string → string labels
//	  - name: idle.demo            # endpoints absent, null or [] : the service
//	    endpoints: []              # exists and has no endpoints
//
// The file is checked as a whole and is valid or not as a whole. Unknown
// fields, duplicate service names, and two endpoints of one service with the
// same id or the same address:port are errors. Host names are not accepted
// (use the dns source). A field written with no value ("zone:") is treated as
// absent. Scalars are taken as spelled, so "version: 1.10" is "1.10". Anchors
// and aliases work; merge keys ("<<") do not. An empty file is an error, not
// an empty list: it is what a reader sees halfway through a truncate-and-write
// save; write "services: []" to declare no services.
//
// Errors name every problem, one per line, sorted by line, as
//
//	services.yaml:7: services[0].endpoints[1].port: 70000 is out of range 1..65535
//
// # Watching
//
// Run watches the file's directory with fsnotify, not the file, so both
// saves by rename (write a temporary file, rename it over the old one, as
// most editors and atomic writers do) and saves in place (truncate, write)
// are seen; when the path is a symbolic link (a Kubernetes ConfigMap volume)
// any entry created, removed or renamed in the directory counts too, because
// kubelet swaps a "..data" link. A burst of events is read once, 100ms after
// it goes quiet. Only a directory event can trigger a read: if the path is a
// link into another directory, edits made there are picked up on Reload
// (SIGHUP) or on the next event in the watched directory.
//
// A bad edit (syntax error, invalid field, a write caught halfway) is logged
// as one error line and the sink is not touched: the last good set stays
// published. A removed file is logged once and the last good set stays too.
// A good edit applies each service whose endpoints changed, and a Deleted
// Update for each service that is gone. Reload re-reads the file and applies
// every service, changed or not; the catalog drops unchanged ones.
//
// At start, a file that is missing, unreadable or invalid makes Run return
// an error, and the supervisor runs it again after a backoff; the catalog
// keeps the source's last good endpoints meanwhile. The first publish of
// each Run applies every service and deletes those reported by an earlier
// Run that are gone, then calls Sink.Synced.
//
// # Concurrency
//
// Run does all the work on its own goroutine (plus fsnotify's, closed before
// Run returns) and keeps the last published set in the Source, so a Run
// started again after a failure diffs against what the sink really holds.
// Runs of one Source never overlap: a second concurrent Run returns an
// error. Reload and Name may be called from any goroutine.
package file
