// Package e2e holds end-to-end tests that build the real outrigger and echo
// binaries, start them as a user would (examples/local config, real sockets
// on loopback, real signals), and drive traffic through them.
//
// The tests own every process they start and stop it before they return.
// They use the demo's fixed ports (9000, 15000, 9101-9103), so the tests in
// this package run one after another, never in parallel.
package e2e
