package config

import (
	"fmt"
	"os"
	"reflect"
	"strings"
)

// ResolveToken returns the admin bearer token from Token, TokenFile or
// TokenEnv, or "" when none is set. A named file that cannot be read or is
// empty, or a named variable that is unset or empty, is an error: an admin
// API that silently runs without the token its operator asked for would be
// open.
func (a *Admin) ResolveToken() (string, error) {
	switch {
	case a == nil:
		return "", nil
	case a.Token != "":
		return a.Token, nil
	case a.TokenFile != "":
		b, err := os.ReadFile(a.TokenFile)
		if err != nil {
			return "", fmt.Errorf("cannot read token file: %w", err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("token file %s is empty", a.TokenFile)
		}
		return t, nil
	case a.TokenEnv != "":
		t := strings.TrimSpace(os.Getenv(a.TokenEnv))
		if t == "" {
			return "", fmt.Errorf("environment variable %s is unset or empty", a.TokenEnv)
		}
		return t, nil
	}
	return "", nil
}

// Redacted is the value that replaces secrets in Redact's output.
const Redacted = "<redacted>"

// Redact returns a deep copy of c in which every non-empty string field
// tagged `secret:"true"`, and every non-empty value of a map field tagged
// `secret:"values"` (keys stay: they say what is matched), reads Redacted,
// for showing the effective configuration (GET /config) without leaking
// credentials.
func (c *Config) Redact() *Config {
	out := reflect.New(reflect.TypeOf(*c)).Elem()
	redactValue(out, reflect.ValueOf(*c))
	r := out.Addr().Interface().(*Config)
	r.src = nil
	return r
}

func redactValue(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Pointer:
		if src.IsNil() {
			return
		}
		dst.Set(reflect.New(src.Elem().Type()))
		redactValue(dst.Elem(), src.Elem())
	case reflect.Struct:
		t := src.Type()
		for i := 0; i < t.NumField(); i++ {
			if !t.Field(i).IsExported() {
				continue
			}
			switch f := src.Field(i); t.Field(i).Tag.Get("secret") {
			case "true":
				if f.Kind() == reflect.String && f.Len() > 0 {
					dst.Field(i).SetString(Redacted)
					continue
				}
			case "values":
				if f.Kind() == reflect.Map && f.Type().Elem().Kind() == reflect.String && !f.IsNil() {
					m := reflect.MakeMapWithSize(f.Type(), f.Len())
					for it := f.MapRange(); it.Next(); {
						v := it.Value()
						if v.Len() > 0 {
							v = reflect.ValueOf(Redacted).Convert(f.Type().Elem())
						}
						m.SetMapIndex(it.Key(), v)
					}
					dst.Field(i).Set(m)
					continue
				}
			}
			redactValue(dst.Field(i), src.Field(i))
		}
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		dst.Set(reflect.MakeSlice(src.Type(), src.Len(), src.Len()))
		for i := 0; i < src.Len(); i++ {
			redactValue(dst.Index(i), src.Index(i))
		}
	case reflect.Map:
		if src.IsNil() {
			return
		}
		dst.Set(reflect.MakeMapWithSize(src.Type(), src.Len()))
		iter := src.MapRange()
		for iter.Next() {
			v := reflect.New(iter.Value().Type()).Elem()
			redactValue(v, iter.Value())
			dst.SetMapIndex(iter.Key(), v)
		}
	default:
		dst.Set(src)
	}
}
