package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// configDebounce is how long the config file's directory must stay quiet
// after an event before the file is read again: one save is a burst of
// events (editors: create temp, write, rename; kubelet: a symlink swap).
const configDebounce = 100 * time.Millisecond

// watchConfig watches the directory of the config file at path and, after
// each burst of events that may have changed the file, sends on changed
// (without blocking: a pending notice covers later ones). It watches the
// directory, not the file, so that saves by rename and Kubernetes ConfigMap
// updates (a "..data" symlink swap no event names the file for) are seen,
// the same way the file discovery source does. It returns nil when ctx
// ends, or an error when it cannot watch (any more).
func watchConfig(ctx context.Context, path string, changed chan<- struct{}) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	dir, base := filepath.Dir(abs), filepath.Base(abs)
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watch directory %s: %w", dir, err)
	}
	viaSymlink := func() bool {
		fi, err := os.Lstat(abs)
		return err == nil && fi.Mode()&fs.ModeSymlink != 0
	}
	symlink := viaSymlink()

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("watcher closed")
			}
			if ev.Name == dir && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				return fmt.Errorf("directory %s was removed or renamed", dir)
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			if filepath.Base(ev.Name) == base || (symlink && ev.Has(fsnotify.Create|fsnotify.Remove|fsnotify.Rename)) {
				timer.Reset(configDebounce)
			}
		case _, ok := <-w.Errors:
			if !ok {
				return errors.New("watcher closed")
			}
			// Events were probably lost: read the file again.
			timer.Reset(configDebounce)
		case <-timer.C:
			symlink = viaSymlink()
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}
}
