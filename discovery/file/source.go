package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/outrigger-mesh/outrigger/discovery"
)

// debounce is how long the directory must stay quiet after an event before
// the file is read again. Editors and kubelet produce bursts of events for
// one save (create temp, write, rename; or truncate, write, write).
const debounce = 100 * time.Millisecond

// Config is the user's settings for one file source.
type Config struct {
	// Path is the services file. Relative paths are taken from the working
	// directory at New. Its directory must exist while the source runs.
	Path string
}

// Validate checks the settings without touching the file system.
func (c Config) Validate() error {
	if c.Path == "" {
		return errors.New("file: path is required")
	}
	return nil
}

// Options are the source's dependencies.
type Options struct {
	// Logger receives reload failures and reload summaries; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Source reports the services of one YAML file. It implements
// discovery.Source. Create it with New.
type Source struct {
	// Set at construction, read-only after.
	name   string
	path   string // as configured, for messages
	abs    string // absolute, for I/O and the watch
	log    *slog.Logger
	reload chan struct{} // capacity 1: pending Reload requests, coalesced

	// runMu is held for the whole of Run, so two Runs never overlap; the
	// fields below belong to whichever Run holds it and outlive it.
	runMu sync.Mutex
	// published is the last good set as the sink has it: service → the
	// endpoints last applied (our own copy, never handed to the sink).
	published map[string][]discovery.Endpoint
	// viaSymlink says the path was a symbolic link at the last read, as in
	// a Kubernetes ConfigMap volume, where an update swaps a "..data" link
	// and no event names the file itself.
	viaSymlink bool
	// missing says the file was absent at the last read (logged once).
	missing bool
}

// New returns a source named name (the Update.Source of everything it
// reports) for the file cfg.Path. It does not touch the file; Run does.
func New(name string, cfg Config, opts Options) (*Source, error) {
	if name == "" {
		return nil, errors.New("file: source name is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("file: %s: %w", cfg.Path, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Source{
		name:      name,
		path:      cfg.Path,
		abs:       abs,
		log:       log.With("source", name, "path", cfg.Path),
		reload:    make(chan struct{}, 1),
		published: map[string][]discovery.Endpoint{},
	}, nil
}

// Name returns the source's name.
func (s *Source) Name() string { return s.name }

// Reload asks the running source to read the file again now and to apply
// every service to the sink, changed or not (cmd/outrigger calls it on
// SIGHUP). It never blocks; requests made while one is pending are merged
// into it, and one made while Run is not running is satisfied by the next
// Run's first read.
func (s *Source) Reload() {
	select {
	case s.reload <- struct{}{}:
	default:
	}
}

// Run implements discovery.Source. It watches the file's directory, reads
// and publishes the file, calls sink.Synced after that first publish, and
// then publishes every good edit until ctx ends, when it returns nil.
//
// At start, a missing, unreadable or invalid file is an error: Run returns
// it and the supervisor runs it again later. While running, a bad edit or a
// removed file is logged once and the last good set stays published.
func (s *Source) Run(ctx context.Context, sink discovery.Sink) error {
	if !s.runMu.TryLock() {
		return fmt.Errorf("file: source %q is already running", s.name)
	}
	defer s.runMu.Unlock()
	if ctx.Err() != nil {
		return nil
	}

	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("file: %s: start watching: %w", s.path, err)
	}
	// Close stops fsnotify's goroutine and waits for it.
	defer w.Close()
	// Watch the directory, not the file: a save by rename replaces the
	// file's inode, and a watch on the old inode would see nothing more.
	// Watching before the first read means no edit after it goes unseen.
	dir := filepath.Dir(s.abs)
	if err := w.Add(dir); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf(`file: directory %s, meant to hold services file %s, does not exist; create it and the file ("services: []" lists no services) or correct the path in the file source's config: %w`, dir, s.path, err)
	} else if err != nil {
		return fmt.Errorf("file: %s: watch directory %s: %w", s.path, dir, err)
	}

	// This first read serves any Reload requested before Run started.
	select {
	case <-s.reload:
	default:
	}
	ups, err := s.read()
	if err != nil {
		return err
	}
	// The first publish of every Run applies every service, so a restarted
	// Run re-asserts the whole set, and deletes what vanished meanwhile.
	if err := s.publish(sink, ups, true); err != nil {
		return fmt.Errorf("file: %s: %w", s.path, err)
	}
	sink.Synced(s.name)
	s.log.Info("file: services file loaded", "services", len(ups))

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	base := filepath.Base(s.abs)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return fmt.Errorf("file: %s: watcher closed", s.path)
			}
			if ev.Name == dir && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				// The watch died with the directory; a new Run sets it up
				// again once the directory is back.
				return fmt.Errorf("file: %s: directory %s was removed or renamed", s.path, dir)
			}
			if s.relevant(ev, base) {
				timer.Reset(debounce) // Go ≥1.23 timers: no stale tick survives Reset
			}
		case err, ok := <-w.Errors:
			if !ok {
				return fmt.Errorf("file: %s: watcher closed", s.path)
			}
			// Most likely an event queue overflow: events were lost, so
			// read the file again rather than trust the last one.
			s.log.Warn("file: watch error; reading the file again", "err", err)
			timer.Reset(debounce)
		case <-timer.C:
			s.reread(sink, false)
		case <-s.reload:
			timer.Stop()
			s.reread(sink, true)
		}
	}
}

// relevant says whether a directory event may have changed the file.
func (s *Source) relevant(ev fsnotify.Event, base string) bool {
	if ev.Op == fsnotify.Chmod {
		return false // attributes only; fsnotify advises ignoring these
	}
	if filepath.Base(ev.Name) == base {
		return true
	}
	return s.viaSymlink && ev.Has(fsnotify.Create|fsnotify.Remove|fsnotify.Rename)
}

// read reads and parses the file.
func (s *Source) read() ([]discovery.Update, error) {
	data, err := os.ReadFile(s.abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf(`file: services file %s does not exist; create it ("services: []" lists no services) or correct the path in the file source's config: %w`, s.path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("file: read %s: %w", s.path, err)
	}
	if fi, err := os.Lstat(s.abs); err == nil {
		s.viaSymlink = fi.Mode()&fs.ModeSymlink != 0
	}
	ups, err := Parse(s.name, s.path, data)
	if err != nil {
		return nil, fmt.Errorf("file: invalid services file:\n%w", err)
	}
	return ups, nil
}

// reread reads the file after a change or a Reload, and publishes it if it
// is good. On any failure the sink is left alone and the failure is logged
// as one line.
func (s *Source) reread(sink discovery.Sink, all bool) {
	ups, err := s.read()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if !s.missing {
			s.missing = true
			s.log.Error("file: services file removed; keeping the last good set until it is back", "services", len(s.published))
		}
		return
	case err != nil:
		s.log.Error("file: services file not reloaded; keeping the last good set", "err", err)
		return
	}
	s.missing = false
	if err := s.publish(sink, ups, all); err != nil {
		s.log.Error("file: services file partly published; the rest is retried at the next change or reload", "err", err)
	}
}

// publish applies the services of ups whose endpoints differ from the last
// published ones (or all of them, if all is set), then deletes the services
// published before that are gone from ups. A service whose Apply fails keeps
// its old entry in s.published, so the next publish retries it.
func (s *Source) publish(sink discovery.Sink, ups []discovery.Update, all bool) error {
	var errs []error
	applied, deleted := 0, 0
	present := make(map[string]bool, len(ups))
	for _, u := range ups {
		present[u.Service] = true
		if old, ok := s.published[u.Service]; ok && !all && equalEndpoints(old, u.Endpoints) {
			continue
		}
		// The sink owns what it is given; we keep u.Endpoints to compare.
		err := sink.Apply(discovery.Update{Source: s.name, Service: u.Service, Endpoints: cloneEndpoints(u.Endpoints)})
		if err != nil {
			errs = append(errs, fmt.Errorf("apply service %q: %w", u.Service, err))
			continue
		}
		s.published[u.Service] = u.Endpoints
		applied++
	}
	for _, svc := range slices.Sorted(maps.Keys(s.published)) {
		if present[svc] {
			continue
		}
		if err := sink.Apply(discovery.Update{Source: s.name, Service: svc, Deleted: true}); err != nil {
			errs = append(errs, fmt.Errorf("delete service %q: %w", svc, err))
			continue
		}
		delete(s.published, svc)
		deleted++
	}
	if applied+deleted > 0 && !all {
		s.log.Info("file: services file reloaded", "changed", applied, "deleted", deleted)
	}
	return errors.Join(errs...)
}

func equalEndpoints(a, b []discovery.Endpoint) bool {
	return slices.EqualFunc(a, b, func(x, y discovery.Endpoint) bool { return x.Equal(&y) })
}

func cloneEndpoints(eps []discovery.Endpoint) []discovery.Endpoint {
	out := slices.Clone(eps)
	for i := range out {
		out[i].Metadata = maps.Clone(out[i].Metadata)
	}
	if out == nil {
		out = []discovery.Endpoint{}
	}
	return out
}
