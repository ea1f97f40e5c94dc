package pipeline

import (
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the stage fields table of docs/configuration.md from the settings types' doc comments")

// The generated part of docs/configuration.md lies between these lines.
const (
	docPath       = "../../docs/configuration.md"
	docBeginMark  = "<!-- BEGIN stage fields: generated from the doc comments of the settings types in internal/pipeline by `go test ./internal/pipeline -run TestStageFieldsDoc -update`; edit the comments, not this table. -->"
	docEndMark    = "<!-- END stage fields -->"
	settingsTypes = "." // the package whose source holds the settings types
)

// TestStageFieldsDoc checks that docs/configuration.md documents each
// stage's route fields with the text of their doc comments, in table order,
// so the reference is written once, next to the code. Run it with -update
// after changing a comment or the table.
func TestStageFieldsDoc(t *testing.T) {
	docs := fieldComments(t)
	var b strings.Builder
	b.WriteString(docBeginMark + "\n")
	b.WriteString("Stages run in this order: ")
	for i, s := range Standard().Stages() {
		if i > 0 {
			b.WriteString(" → ")
		}
		b.WriteString("`" + s.Name() + "`")
	}
	b.WriteString(".\n\n| Field | Meaning | Default |\n|---|---|---|\n")
	for _, s := range Standard().Stages() {
		writeRows(t, &b, docs, s.Settings(), "")
	}
	b.WriteString(docEndMark)
	want := b.String()

	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	begin := strings.Index(string(doc), docBeginMark)
	end := strings.Index(string(doc), docEndMark)
	if begin < 0 || end < begin {
		t.Fatalf("%s has no generated stage fields block (%q ... %q)", docPath, docBeginMark, docEndMark)
	}
	got := string(doc[begin : end+len(docEndMark)])
	if got == want {
		return
	}
	if *update {
		out := string(doc[:begin]) + want + string(doc[end+len(docEndMark):])
		if err := os.WriteFile(docPath, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s's stage fields are not those of the settings types' doc comments; run\n\tgo test ./internal/pipeline -run TestStageFieldsDoc -update\ngot:\n%s\nwant:\n%s", docPath, got, want)
}

// writeRows writes one table row per leaf field of the settings struct t;
// a field holding a struct contributes its fields under its own name.
func writeRows(t *testing.T, b *strings.Builder, docs map[string]string, typ reflect.Type, prefix string) {
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			writeRows(t, b, docs, ft, prefix+name+".")
			continue
		}
		text, ok := docs[typ.Name()+"."+f.Name]
		if !ok {
			t.Errorf("%s.%s (%s%s) has no doc comment", typ.Name(), f.Name, prefix, name)
			continue
		}
		meaning, def := docRow(f.Name, text)
		if def == "" {
			t.Errorf("%s.%s's doc comment does not end with its default (\"Default ...\")", typ.Name(), f.Name)
		}
		b.WriteString("| `" + prefix + name + "` | " + meaning + " | " + def + " |\n")
	}
}

// defaultSentence is the comment's last sentence, "Default X." or
// "Default: X.".
var defaultSentence = regexp.MustCompile(`(?:^|\.\s+)Default:?\s+([^.]*(?:\.\d[^.]*)*)\.?\s*$`)

// literal is a leading value that reads as code: a number or size, a
// boolean, a quoted string.
var literal = regexp.MustCompile(`^(-?\d[\w.]*|true|false|"[^"]*")`)

// docRow turns a field's doc comment into the table's meaning and default
// cells: the comment without the field's Go name and its default sentence.
func docRow(goName, text string) (meaning, def string) {
	text = strings.Join(strings.Fields(text), " ")
	text = strings.TrimPrefix(text, goName+" ")
	if text != "" {
		text = strings.ToUpper(text[:1]) + text[1:]
	}
	if m := defaultSentence.FindStringSubmatchIndex(text); m != nil {
		def = text[m[2]:m[3]]
		text = text[:m[0]]
		if !strings.HasSuffix(text, ".") {
			text += "."
		}
		if lit := literal.FindString(def); lit != "" {
			def = "`" + lit + "`" + def[len(lit):]
		}
	}
	return markdown(text), markdown(def)
}

// quoted is a double-quoted value in a comment: a field value, a header.
var quoted = regexp.MustCompile(`"([^"` + "`" + `]+)"`)

// markdown escapes a comment's text for a table cell: quoted values become
// code spans (so "</a>" is not read as HTML), "|" is escaped.
func markdown(s string) string {
	s = quoted.ReplaceAllString(s, "`$1`")
	return strings.ReplaceAll(s, "|", `\|`)
}

// fieldComments reads the package's source and returns the doc comment of
// every struct field, keyed "Type.Field".
func fieldComments(t *testing.T) map[string]string {
	names, err := filepath.Glob(filepath.Join(settingsTypes, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	docs := map[string]string{}
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		{
			ast.Inspect(file, func(n ast.Node) bool {
				ts, ok := n.(*ast.TypeSpec)
				if !ok {
					return true
				}
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					return true
				}
				for _, f := range st.Fields.List {
					for _, name := range f.Names {
						if f.Doc != nil {
							docs[ts.Name.Name+"."+name.Name] = f.Doc.Text()
						}
					}
				}
				return true
			})
		}
	}
	return docs
}
