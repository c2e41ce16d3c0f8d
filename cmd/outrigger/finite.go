package main

import (
	"math"
	"reflect"
	"strconv"
	"strings"
)

// checkFinite reports every float field of the decoded config that holds
// NaN or an infinity (YAML's .nan and .inf): range checks written as
// "v < lo || v > hi" pass NaN, so it is refused once here, for every float
// field there is and will be, with the field's path for file:line.
func checkFinite(v reflect.Value, path string, add func(string, string, ...any)) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			checkFinite(v.Elem(), path, add)
		}
	case reflect.Float32, reflect.Float64:
		if f := v.Float(); math.IsNaN(f) || math.IsInf(f, 0) {
			add(path, "%v is not a finite number", f)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" {
				continue
			}
			p := path
			if name != "" { // an inlined struct keeps its parent's path
				p = joinKey(path, name)
			}
			checkFinite(v.Field(i), p, add)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			checkFinite(v.Index(i), path+"["+strconv.Itoa(i)+"]", add)
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			k := iter.Key()
			key := ""
			if k.Kind() == reflect.String {
				key = k.String()
			}
			checkFinite(iter.Value(), joinKey(path, key), add)
		}
	}
}
