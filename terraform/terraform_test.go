// The Terraform configuration, checked without the DigitalOcean provider (it cannot
// be had here): formatted as terraform fmt leaves it, clean under tflint, the
// properties that matter read from the parsed HCL, and cloud-init's user data
// rendered as templatefile does and validated by cloud-init itself. `terraform
// plan` with the provider and an account is the operator's step (docs/install.md).
package terraform_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGl0IGlzIGEgdGVzdCBrZXkgb2YgdGhlIGFkbWlu admin@tuta"

// config is every .tf file of the folder, parsed.
func config(t *testing.T) map[string]*hclsyntax.Body {
	t.Helper()
	files, _ := filepath.Glob("*.tf")
	if len(files) == 0 {
		t.Fatal("no .tf files")
	}
	out := map[string]*hclsyntax.Body{}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		file, diags := hclsyntax.ParseConfig(src, f, hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		out[f] = file.Body.(*hclsyntax.Body)
	}
	return out
}

// blocks are the top-level blocks of a type with these labels (a prefix of them).
func blocks(cfg map[string]*hclsyntax.Body, typ string, labels ...string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, f := range sortedKeys(cfg) {
		for _, b := range cfg[f].Blocks {
			if b.Type == typ && len(b.Labels) >= len(labels) && slices.Equal(b.Labels[:len(labels)], labels) {
				out = append(out, b)
			}
		}
	}
	return out
}

func one(t *testing.T, cfg map[string]*hclsyntax.Body, typ string, labels ...string) *hclsyntax.Block {
	t.Helper()
	bs := blocks(cfg, typ, labels...)
	if len(bs) != 1 {
		t.Fatalf("%s %q: %d blocks, want 1", typ, labels, len(bs))
	}
	return bs[0]
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// refs are the references an expression makes, such as var.do_token.
func refs(e hclsyntax.Expression) []string {
	var out []string
	for _, tr := range e.Variables() {
		parts := []string{tr.RootName()}
		for _, step := range tr[1:] {
			if a, ok := step.(hcl.TraverseAttr); ok {
				parts = append(parts, a.Name)
			}
		}
		out = append(out, strings.Join(parts, "."))
	}
	return out
}

// literal is an attribute's value where it needs no context.
func literal(t *testing.T, b *hclsyntax.Body, name string) cty.Value {
	t.Helper()
	a, ok := b.Attributes[name]
	if !ok {
		return cty.NilVal
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		t.Fatalf("%s: %s", name, diags)
	}
	return v
}

func TestFormattedAsTerraformFmt(t *testing.T) {
	for _, f := range sortedKeys(config(t)) {
		src, _ := os.ReadFile(f)
		if got := hclwrite.Format(src); !bytes.Equal(got, src) {
			t.Errorf("%s is not formatted as terraform fmt leaves it; formatted:\n%s", f, got)
		}
	}
}

func TestTflint(t *testing.T) {
	bin, err := exec.LookPath("tflint")
	if err != nil {
		bin = "../.tools/tflint" // make tools puts it there
	}
	out, err := exec.Command(bin, "--format", "compact", "--config", ".tflint.hcl").CombinedOutput()
	if err != nil {
		t.Fatalf("tflint (%s; make tools installs it): %v\n%s", bin, err, out)
	}
}

func TestFirewallLetsInOnlySSHHTTPAndHTTPS(t *testing.T) {
	cfg := config(t)
	fws := blocks(cfg, "resource", "digitalocean_firewall")
	if len(fws) != 1 {
		t.Fatalf("%d firewalls, want 1", len(fws))
	}
	var ports []string
	for _, b := range fws[0].Body.Blocks {
		if b.Type != "inbound_rule" {
			continue
		}
		if p := literal(t, b.Body, "protocol").AsString(); p != "tcp" {
			t.Errorf("an inbound %s rule", p)
		}
		port := literal(t, b.Body, "port_range").AsString()
		ports = append(ports, port)
		if port == "80" || port == "443" { // Zoom and Let's Encrypt come from anywhere
			if src := literal(t, b.Body, "source_addresses"); !src.Equals(cty.TupleVal([]cty.Value{cty.StringVal("0.0.0.0/0"), cty.StringVal("::/0")})).True() {
				t.Errorf("port %s open to %#v only", port, src)
			}
		}
	}
	sort.Strings(ports)
	if strings.Join(ports, ",") != "22,443,80" {
		t.Errorf("inbound ports %q, want 22, 80 and 443", ports)
	}
	if got := refs(fws[0].Body.Attributes["droplet_ids"].Expr); !slices.Equal(got, []string{"digitalocean_droplet.archive.id"}) {
		t.Errorf("the firewall covers %q, not the droplet", got)
	}
}

// SSH is open to whom the operator names: no default, and a list of CIDR
// addresses, open to all only when written out as such.
func TestSSHOpenOnlyToTheAddressesGiven(t *testing.T) {
	v := one(t, config(t), "variable", "ssh_allowed_from")
	if d, ok := v.Body.Attributes["default"]; ok {
		val, _ := d.Expr.Value(nil)
		t.Errorf("ssh_allowed_from has a default, %#v: terraform apply would open SSH without asking", val)
	}
	var condition hclsyntax.Expression
	for _, b := range v.Body.Blocks {
		if b.Type == "validation" {
			condition = b.Body.Attributes["condition"].Expr
		}
	}
	if condition == nil {
		t.Fatal("ssh_allowed_from has no validation")
	}
	for _, c := range []struct {
		given []string
		valid bool
	}{
		{nil, false},
		{[]string{"203.0.113.7"}, false},
		{[]string{"the office"}, false},
		{[]string{"203.0.113.7/32", "2001:db8::/64"}, true},
		{[]string{"0.0.0.0/0", "::/0"}, true}, // open to all, said so
	} {
		list := cty.ListValEmpty(cty.String)
		if len(c.given) > 0 {
			var vals []cty.Value
			for _, g := range c.given {
				vals = append(vals, cty.StringVal(g))
			}
			list = cty.ListVal(vals)
		}
		ctx := &hcl.EvalContext{Functions: terraformFunctions(),
			Variables: map[string]cty.Value{"var": cty.ObjectVal(map[string]cty.Value{"ssh_allowed_from": list})}}
		got, diags := condition.Value(ctx)
		if diags.HasErrors() {
			t.Fatalf("%q: %s", c.given, diags)
		}
		if got.True() != c.valid {
			t.Errorf("ssh_allowed_from = %q: valid %v, want %v", c.given, got.True(), c.valid)
		}
	}
}

func TestTokenOnlyFromASensitiveVariable(t *testing.T) {
	cfg := config(t)
	v := one(t, cfg, "variable", "do_token")
	if s := literal(t, v.Body, "sensitive"); s == cty.NilVal || s.False() {
		t.Error("variable do_token is not sensitive")
	}
	if _, ok := v.Body.Attributes["default"]; ok {
		t.Error("variable do_token has a default: the token would be in a file")
	}
	p := one(t, cfg, "provider", "digitalocean")
	if got := refs(p.Body.Attributes["token"].Expr); !slices.Equal(got, []string{"var.do_token"}) {
		t.Errorf("the provider's token is %q", got)
	}
	// Nowhere else: not in outputs, user data or a resource.
	for _, f := range sortedKeys(cfg) {
		hclsyntax.VisitAll(cfg[f], func(n hclsyntax.Node) hcl.Diagnostics {
			if a, ok := n.(*hclsyntax.Attribute); ok && a != p.Body.Attributes["token"] && slices.Contains(refs(a.Expr), "var.do_token") {
				t.Errorf("%s: %s uses var.do_token", a.SrcRange, a.Name)
			}
			return nil
		})
	}
	for _, pattern := range []string{"*.tfvars", "*.tfstate", "*.tfstate.*"} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			t.Errorf("committed next to the configuration: %q", m)
		}
	}
	ignore, _ := os.ReadFile("../.gitignore")
	for _, want := range []string{"*.tfvars", "*.tfstate", ".terraform/"} {
		if !strings.Contains(string(ignore), want) {
			t.Errorf(".gitignore does not keep out %s", want)
		}
	}
}

func TestOutputsHoldNoSecret(t *testing.T) {
	cfg := config(t)
	sensitive := map[string]bool{}
	for _, v := range blocks(cfg, "variable") {
		if s := literal(t, v.Body, "sensitive"); s != cty.NilVal && s.True() {
			sensitive["var."+v.Labels[0]] = true
		}
	}
	outputs := blocks(cfg, "output")
	if len(outputs) == 0 {
		t.Fatal("no outputs")
	}
	for _, o := range outputs {
		for _, r := range refs(o.Body.Attributes["value"].Expr) {
			if sensitive[r] || strings.Contains(r, "user_data") || strings.HasPrefix(r, "local.") && r != "local.address" {
				t.Errorf("output %s shows %s", o.Labels[0], r)
			}
		}
	}
}

func TestSSHKeyIsTheAdminsPublicKey(t *testing.T) {
	cfg := config(t)
	key := one(t, cfg, "resource", "digitalocean_ssh_key")
	if got := refs(key.Body.Attributes["public_key"].Expr); !slices.Equal(got, []string{"var.admin_ssh_public_key"}) {
		t.Errorf("the SSH key is %q", got)
	}
	droplet := one(t, cfg, "resource", "digitalocean_droplet")
	if got := refs(droplet.Body.Attributes["ssh_keys"].Expr); !slices.Equal(got, []string{"digitalocean_ssh_key." + key.Labels[1] + ".fingerprint"}) {
		t.Errorf("the droplet's keys are %q", got)
	}
}

// cloud-init runs once; a later change of the files it lays down must not make
// Terraform replace the droplet and lose the broker's data with it.
func TestDropletNotReplacedForUserData(t *testing.T) {
	droplet := one(t, config(t), "resource", "digitalocean_droplet")
	for _, b := range droplet.Body.Blocks {
		if b.Type == "lifecycle" {
			if a, ok := b.Body.Attributes["ignore_changes"]; ok && slices.Contains(refs(a.Expr), "user_data") {
				return
			}
		}
	}
	t.Fatal("the droplet's lifecycle does not ignore changes of user_data")
}

// The droplet's user data, rendered with test values as Terraform would, is valid
// cloud-config (cloud-init's own schema check), and lays down the repository's
// files byte for byte.
func TestCloudInitUserData(t *testing.T) {
	cfg := config(t)
	vars := map[string]cty.Value{"admin_ssh_public_key": cty.StringVal(testKey), "domain": cty.StringVal("archive.tuta.fi"),
		"do_token": cty.StringVal("not-a-token")}
	for _, v := range blocks(cfg, "variable") {
		if d, ok := v.Body.Attributes["default"]; ok {
			val, diags := d.Expr.Value(nil)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			vars[v.Labels[0]] = val
		}
	}
	ctx := &hcl.EvalContext{Functions: terraformFunctions(), Variables: map[string]cty.Value{
		"var":  cty.ObjectVal(vars),
		"path": cty.ObjectVal(map[string]cty.Value{"module": cty.StringVal(".")}),
	}}
	locals := map[string]cty.Value{}
	for _, l := range blocks(cfg, "locals") {
		for name, a := range l.Body.Attributes {
			if v, diags := a.Expr.Value(ctx); !diags.HasErrors() {
				locals[name] = v
			} else {
				locals[name] = cty.DynamicVal // it needs a resource's attributes
			}
		}
	}
	ctx.Variables["local"] = cty.ObjectVal(locals)
	droplet := one(t, cfg, "resource", "digitalocean_droplet")
	userData, diags := droplet.Body.Attributes["user_data"].Expr.Value(ctx)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	rendered := userData.AsString()
	file := filepath.Join(t.TempDir(), "user-data.yaml")
	if err := os.WriteFile(file, []byte(rendered), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cloud-init", "schema", "--config-file", file).CombinedOutput(); err != nil {
		t.Fatalf("cloud-init schema (Debian's cloud-init; make tools installs it): %v\n%s\n%s", err, out, rendered)
	}

	// YAML to JSON through cloud-init's own YAML library.
	js, err := exec.Command("python3", "-c", "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)", file).Output()
	if err != nil {
		t.Fatal(err)
	}
	var ud struct {
		Users []struct {
			Name string   `json:"name"`
			Keys []string `json:"ssh_authorized_keys"`
		} `json:"users"`
		WriteFiles []struct{ Path, Content, Encoding string } `json:"write_files"`
		Packages   []string                                   `json:"packages"`
	}
	if err := json.Unmarshal(js, &ud); err != nil {
		t.Fatal(err)
	}
	if len(ud.Users) != 1 || ud.Users[0].Name != vars["admin_user"].AsString() || !slices.Equal(ud.Users[0].Keys, []string{testKey}) {
		t.Errorf("users %+v", ud.Users)
	}
	for _, p := range []string{"docker.io", "docker-compose", "logrotate", "cron", "unattended-upgrades"} {
		if !slices.Contains(ud.Packages, p) {
			t.Errorf("package %s not installed", p)
		}
	}
	written := map[string]string{}
	for _, f := range ud.WriteFiles {
		content := f.Content
		if f.Encoding == "b64" {
			b, err := base64.StdEncoding.DecodeString(f.Content)
			if err != nil {
				t.Fatal(err)
			}
			content = string(b)
		}
		written[f.Path] = content
	}
	for _, want := range []struct{ path, repo string }{
		{"/opt/zoomarchive/compose.yaml", "compose.yaml"},
		{"/opt/zoomarchive/nats/nats.conf", "nats/nats.conf"},
		{"/opt/zoomarchive/nginx/nginx.conf", "nginx/nginx.conf"},
		{"/opt/zoomarchive/deploy/production.env.example", "deploy/production.env.example"},
		{"/opt/zoomarchive/deploy/certbot/entrypoint.sh", "deploy/certbot/entrypoint.sh"},
		{"/etc/zoomarchive/logrotate.conf", "deploy/logrotate/zoomarchive"},
	} {
		src, _ := os.ReadFile(filepath.Join("..", want.repo))
		if written[want.path] != string(src) {
			t.Errorf("%s is not the repository's %s", want.path, want.repo)
		}
	}
	if cron := written["/etc/cron.d/zoomarchive"]; !strings.Contains(cron, "logrotate -s") || !strings.Contains(cron, "/etc/zoomarchive/logrotate.conf") {
		t.Errorf("no nightly logrotate in cron: %q", cron)
	}
	if cron := written["/etc/cron.d/zoomarchive"]; !strings.Contains(cron, "cd /opt/zoomarchive && docker compose run --rm rotate-key") {
		t.Errorf("no monthly key rotation in cron: %q", cron)
	}
	// certbot leaves nothing running: cron starts it twice a day, logging into a
	// folder cloud-init makes.
	renewals := 0
	for _, line := range strings.Split(written["/etc/cron.d/zoomarchive"], "\n") {
		if f := strings.Fields(line); len(f) > 5 && strings.Contains(line, "cd /opt/zoomarchive && docker compose run --rm certbot >>/var/log/zoomarchive/certbot/") {
			renewals++
			if f[1] != "3,15" || f[5] != "root" {
				t.Errorf("certbot's cron line: %q (want twice a day, as root)", line)
			}
		}
	}
	if renewals != 1 || !strings.Contains(rendered, "/var/log/zoomarchive/certbot ") {
		t.Errorf("certbot in cron %d times, its log folder made: %v", renewals, strings.Contains(rendered, "/var/log/zoomarchive/certbot "))
	}
	unattendedUpgrades(t, written)
	if strings.Contains(rendered, "not-a-token") {
		t.Error("the DigitalOcean token reached the user data")
	}
}

// unattendedUpgrades: the droplet's apt, read by apt-config itself, installs
// Debian's security updates every day, nothing else unattended, and reboots at a
// fixed night hour when one needs it.
func unattendedUpgrades(t *testing.T, written map[string]string) {
	t.Helper()
	var conf []string
	for path, content := range written {
		if strings.HasPrefix(path, "/etc/apt/apt.conf.d/") {
			f := filepath.Join(t.TempDir(), filepath.Base(path))
			if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			conf = append(conf, "-c", f)
		}
	}
	if len(conf) == 0 {
		t.Fatal("no apt configuration written: security updates wait for someone to log in")
	}
	out, err := exec.Command("apt-config", append(conf, "dump")...).CombinedOutput()
	if err != nil {
		t.Fatalf("apt-config: %v\n%s", err, out)
	}
	dump := string(out)
	for _, want := range []string{`APT::Periodic::Update-Package-Lists "1";`, `APT::Periodic::Unattended-Upgrade "1";`,
		`Unattended-Upgrade::Automatic-Reboot "true";`, `Unattended-Upgrade::Automatic-Reboot-Time "02:30";`} {
		if !strings.Contains(dump, want+"\n") {
			t.Errorf("apt's configuration lacks %s", want)
		}
	}
	var origins []string
	for _, line := range strings.Split(dump, "\n") {
		if v, ok := strings.CutPrefix(line, "Unattended-Upgrade::Origins-Pattern:: "); ok {
			origins = append(origins, v)
		}
	}
	if len(origins) == 0 {
		t.Error("no origins for unattended upgrades")
	}
	for _, o := range origins {
		if !strings.Contains(o, "label=Debian-Security") {
			t.Errorf("unattended upgrades from %s, not a security origin", o)
		}
	}
}

// terraformFunctions are the Terraform functions the configuration calls, with
// Terraform's meaning, paths relative to the module.
func terraformFunctions() map[string]function.Function {
	fns := map[string]function.Function{}
	fns["filebase64"] = function.New(&function.Spec{
		Params: []function.Parameter{{Name: "path", Type: cty.String}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			b, err := os.ReadFile(args[0].AsString())
			return cty.StringVal(base64.StdEncoding.EncodeToString(b)), err
		},
	})
	fns["length"] = stdlib.LengthFunc
	fns["can"] = tryfunc.CanFunc
	fns["alltrue"] = function.New(&function.Spec{
		Params: []function.Parameter{{Name: "list", Type: cty.List(cty.Bool)}},
		Type:   function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			for _, v := range args[0].AsValueSlice() {
				if v.False() {
					return cty.False, nil
				}
			}
			return cty.True, nil
		},
	})
	// cidrhost(prefix, 0) only: whether prefix is an address in CIDR notation.
	fns["cidrhost"] = function.New(&function.Spec{
		Params: []function.Parameter{{Name: "prefix", Type: cty.String}, {Name: "hostnum", Type: cty.Number}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			_, n, err := net.ParseCIDR(args[0].AsString())
			if err != nil {
				return cty.NilVal, err
			}
			return cty.StringVal(n.IP.String()), nil
		},
	})
	fns["templatefile"] = function.New(&function.Spec{
		Params: []function.Parameter{{Name: "path", Type: cty.String}, {Name: "vars", Type: cty.DynamicPseudoType}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			src, err := os.ReadFile(args[0].AsString())
			if err != nil {
				return cty.NilVal, err
			}
			tmpl, diags := hclsyntax.ParseTemplate(src, args[0].AsString(), hcl.InitialPos)
			if diags.HasErrors() {
				return cty.NilVal, diags
			}
			v, diags := tmpl.Value(&hcl.EvalContext{Variables: args[1].AsValueMap(), Functions: fns})
			if diags.HasErrors() {
				return cty.NilVal, diags
			}
			return v, nil
		},
	})
	return fns
}
