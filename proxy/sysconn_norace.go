//go:build linux && !race

package proxy

func raceReadDone([]byte)   {}
func raceWriteStart([]byte) {}
