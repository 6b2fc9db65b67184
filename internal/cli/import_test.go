package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var petstore = filepath.Join("testdata", "openapi", "petstore.yaml")

// The import proposes the chosen operations only, verb first; its output
// does not load until the operator sets the scopes, and then it does.
func TestImportOpenAPI(t *testing.T) {
	code, out, errOut := runCLI(t, nil, "import", "openapi", petstore, "--operations", "listPets,showPetById,createPet,petRemoval", "--source", "pets")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"  list_pets:", "  show_pet_by_id:", "  create_pet:", "  delete_pet_removal:",
		`path: "/pets/{pet_id}"`, `body: {"name":"name","owner":{"email":"owner_email"},"tag":"tag"}`,
		`"X-Request-Id": x_request_id`, "# not imported: body field tags",
		`output_schema: {"properties":{"id":{"type":"string"},"name":{"type":"string"},"tag":{"type":"string"}},"required":["id","name"],"type":"object"}`, "description: \"Add a pet to the store.\""} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	dir := t.TempDir()
	src := "server: {name: test}\nsources:\n  pets:\n    kind: http\n    base_url: https://pets.example.com\n"
	file := filepath.Join(dir, "warden.yaml")
	os.WriteFile(file, []byte(src+out), 0o644)
	code, _, errOut = runCLI(t, nil, "check", "--config", file)
	if code != exitFailure || !strings.Contains(errOut, "tools.list_pets.scope: required") {
		t.Fatalf("the import loaded without scopes: exit %d: %s", code, errOut)
	}
	filled := strings.ReplaceAll(out, `scope: ""`, "scope: pets.use")
	os.WriteFile(file, []byte(src+filled), 0o644)
	code, checked, errOut := runCLI(t, nil, "check", "--config", file)
	if code != exitOK {
		t.Fatalf("the import with scopes does not load: %s", errOut)
	}
	if !strings.Contains(checked, "create_pet  (write") || !strings.Contains(checked, "list_pets  (read") {
		t.Errorf("check: %s", checked)
	}
}

func TestImportOpenAPI31JSON(t *testing.T) {
	code, out, errOut := runCLI(t, nil, "import", "openapi", filepath.Join("testdata", "openapi", "tickets-3.1.json"), "--operations", "ticket-update")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"  update_ticket:", "method: PATCH", `"enum":["open","closed"]`, `"type":"integer"`, "source: \"tickets_3_1\""} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestImportOpenAPIRefusals(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"import", "openapi", petstore}, exitUsage, "--operations"},
		{[]string{"import", "openapi", petstore, "--operations", "nope"}, exitFailure, `no operation "nope"`},
		{[]string{"import", "openapi", "missing.yaml", "--operations", "x"}, exitFailure, "missing.yaml"},
	} {
		code, _, errOut := runCLI(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.err) {
			t.Errorf("%v: exit %d, %s", tc.args, code, errOut)
		}
	}
}

// warden check opens an http source and resolves its secret, and shows
// neither the value nor anything derived from it.
func TestCheckNeverShowsASecret(t *testing.T) {
	const token = "tok-check-8Kd2mZ0qYv"
	t.Setenv("CHECK_API_TOKEN", token)
	file := filepath.Join(t.TempDir(), "warden.yaml")
	os.WriteFile(file, []byte(`
server: {name: test}
sources:
  api:
    kind: http
    base_url: https://api.example.com
    auth: {bearer: "${env:CHECK_API_TOKEN}"}
tools:
  get_thing:
    description: Get a thing.
    source: api
    scope: api.read
    method: GET
    path: /things/{id}
    parameters:
      id: {type: string, description: The thing's id., required: true}
`), 0o644)
	for _, args := range [][]string{{"check", "--config", file}, {"check", "--json", "--config", file}} {
		code, out, errOut := runCLI(t, nil, args...)
		if code != exitOK || strings.Contains(out+errOut, token) {
			t.Errorf("%v: exit %d, token shown: %v\n%s%s", args, code, strings.Contains(out+errOut, token), out, errOut)
		}
	}
}
