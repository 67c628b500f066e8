// Package config reads a stage's settings: each one an environment variable and the
// same-named flag (ZOOM_API_URL and --zoom-api-url), a secret also from a file named by
// NAME_FILE. A stage reads every setting it needs, then calls Err once, so that a
// person starting it sees every missing or invalid setting in one message.
package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"zoomarchive/shared/obs"
)

// Version is the release the program was built from (make build sets it from the
// VERSION file and the commit; `PROGRAM --version` prints it). "dev": built
// without make.
var Version = "dev"

// Setting is one variable a stage reads.
type Setting struct {
	Name     string // the environment variable; the flag is its kebab-case form
	Default  string
	Usage    string
	Required bool
	Secret   bool // may come from NAME_FILE; its value is never printed
	// Health, on a listen-address setting, is the path that answers 200 while the
	// program is healthy; it gives the program a healthcheck command, for images
	// that have no shell or curl to run one.
	Health string
}

// Command is a subcommand of a stage (fetch backfill): its own flags, and the
// stage's settings as for the stage itself.
type Command struct {
	Name, Usage string
	Flags       []cli.Flag
	Action      func(ctx context.Context, v *Values, c *cli.Context) error
}

// Run parses args as flags over settings, then calls action with the values, or a
// command's action when args name one. -h lists every setting with its variable and
// default.
func Run(ctx context.Context, stage, usage string, settings []Setting, args []string,
	getenv func(string) string, stdout, stderr io.Writer, action func(context.Context, *Values) error, commands ...Command) error {
	app := &cli.App{
		Name:            stage,
		Usage:           usage,
		Version:         Version,
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {}, // errors go back to main, which exits
	}
	for _, s := range settings {
		help := s.Usage + " (env " + s.Name
		if s.Secret {
			help += " or " + s.Name + "_FILE"
		}
		switch {
		case s.Required:
			help += "; required)"
		case s.Default != "":
			help += "; default " + s.Default + ")"
		default:
			help += ")"
		}
		app.Flags = append(app.Flags, &cli.StringFlag{Name: FlagName(s.Name), Usage: help})
	}
	app.Flags = append(app.Flags, &cli.BoolFlag{Name: "check-settings", Usage: "check the settings, say what is wrong, and exit"})
	values := func(c *cli.Context) *Values {
		v := &Values{check: c.Bool("check-settings"), settings: map[string]Setting{}, lookup: func(name string) (string, bool) {
			if f := FlagName(name); c.IsSet(f) {
				return c.String(f), true
			}
			val := getenv(name)
			return val, val != ""
		}, getenv: getenv}
		for _, s := range settings {
			v.settings[s.Name] = s
		}
		return v
	}
	done := func(err error) error {
		if err != errSettingsOK {
			return err
		}
		fmt.Fprintln(stdout, stage+": settings ok")
		return nil
	}
	app.Action = func(c *cli.Context) error {
		if c.NArg() > 0 {
			return fmt.Errorf("unexpected arguments %q; settings are flags or environment variables, see -h", c.Args().Slice())
		}
		err := action(c.Context, values(c))
		if err != nil && c.Context.Err() != nil && errors.Is(err, c.Context.Err()) {
			return nil // stopped by its signal before it was up: as clean as after
		}
		return done(err)
	}
	for _, s := range settings {
		if s.Health != "" {
			commands = append(commands, healthcheck(s))
		}
	}
	for _, cmd := range commands {
		app.Commands = append(app.Commands, &cli.Command{Name: cmd.Name, Usage: cmd.Usage, Flags: cmd.Flags,
			Action: func(c *cli.Context) error { return done(cmd.Action(c.Context, values(c), c)) }})
	}
	if len(args) == 0 {
		args = []string{stage}
	}
	return app.RunContext(ctx, args)
}

// healthcheck asks the running program's listener named by s for s.Health.
func healthcheck(s Setting) Command {
	return Command{Name: "healthcheck", Usage: "exit 0 if the running program answers " + s.Health + " on " + s.Name,
		Action: func(ctx context.Context, v *Values, _ *cli.Context) error {
			addr := v.String(s.Name)
			if err := v.Err(); err != nil {
				return err
			}
			if err := obs.Probe(ctx, addr, s.Health); err != nil {
				return fmt.Errorf("%s %s: %w", s.Name, addr, err)
			}
			return nil
		}}
}

// FlagName is the flag for a variable: HOOK_ADDR is --hook-addr.
func FlagName(env string) string { return strings.ReplaceAll(strings.ToLower(env), "_", "-") }

// errSettingsOK stops a stage run with --check-settings once Err found nothing.
var errSettingsOK = errors.New("settings ok")

// Values hands out settings by name, collecting every problem for Err.
type Values struct {
	check    bool // --check-settings: Err ends the run
	settings map[string]Setting
	lookup   func(string) (string, bool)
	getenv   func(string) string
	problems []string
}

// Err lists every missing or invalid setting read so far, or is nil. Under
// --check-settings it ends the run either way: the stage returns what Err says.
func (v *Values) Err() error {
	if len(v.problems) == 0 {
		if v.check {
			return errSettingsOK
		}
		return nil
	}
	return fmt.Errorf("%d setting(s) missing or invalid:\n  %s", len(v.problems), strings.Join(v.problems, "\n  "))
}

// Invalid records a problem a stage found in a value it read.
func (v *Values) Invalid(name, why string) {
	v.problems = append(v.problems, name+": "+why)
}

// String is the raw value: the flag, else the variable, else NAME_FILE's content for
// a secret, else the default. A required setting with no value is recorded as missing.
func (v *Values) String(name string) string {
	s, ok := v.settings[name]
	if !ok {
		panic("config: setting " + name + " is not declared")
	}
	val, set := v.lookup(name)
	if s.Secret {
		if file := v.getenv(name + "_FILE"); file != "" {
			if set {
				v.Invalid(name, "set either "+name+" or "+name+"_FILE, not both")
				return ""
			}
			b, err := os.ReadFile(file)
			if err != nil {
				v.Invalid(name, "cannot read "+name+"_FILE: "+err.Error())
				return ""
			}
			val, set = strings.TrimRight(string(b), "\r\n"), true
		}
	}
	if !set || val == "" {
		val = s.Default
	}
	if val == "" && s.Required {
		alt := ""
		if s.Secret {
			alt = " (or " + name + "_FILE naming a file that holds it)"
		}
		v.Invalid(name, "required"+alt+": "+s.Usage)
	}
	return val
}

// List is a comma-separated setting (SplitList).
func (v *Values) List(name string) []string { return SplitList(v.String(name)) }

// SplitList splits a comma-separated value, each item trimmed, empty items dropped.
func SplitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// Daily is a time of day in UTC (HH:MM) a setting names for a daily task, or off.
type Daily struct {
	Off  bool
	H, M int
}

// Daily reads a setting that is HH:MM (UTC) or off.
func (v *Values) Daily(name string) Daily {
	raw := v.String(name)
	if raw == "off" {
		return Daily{Off: true}
	}
	var d Daily
	if n, _ := fmt.Sscanf(raw, "%d:%d", &d.H, &d.M); n != 2 || d.H < 0 || d.H > 23 || d.M < 0 || d.M > 59 {
		v.Invalid(name, fmt.Sprintf("%q is not a time of day like 04:00, or off", raw))
	}
	return d
}

// Next is the first time of day d after now.
func (d Daily) Next(now time.Time) time.Time {
	now = now.UTC()
	next := time.Date(now.Year(), now.Month(), now.Day(), d.H, d.M, 0, 0, time.UTC)
	if !next.After(now) {
		next = next.AddDate(0, 0, 1)
	}
	return next
}

// OnOff reads a setting that is on or off.
func (v *Values) OnOff(name string) bool {
	switch raw := v.String(name); raw {
	case "on":
		return true
	case "off", "":
		return false
	default:
		v.Invalid(name, fmt.Sprintf("%q is not on or off", raw))
		return false
	}
}

// Duration reads a Go duration such as 300s, 2h or 720h; it must be positive.
func (v *Values) Duration(name string) time.Duration {
	raw := v.String(name)
	if raw == "" {
		return 0
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d <= 0 {
		v.Invalid(name, fmt.Sprintf("%q is not a positive duration such as 300s, 2h or 720h", raw))
		return 0
	}
	return d
}

// DurationOrZero reads a duration that may be 0 (off).
func (v *Values) DurationOrZero(name string) time.Duration {
	if raw := strings.TrimSpace(v.String(name)); raw == "0" || raw == "" {
		return 0
	}
	return v.Duration(name)
}

// Int reads a whole number of at least min.
func (v *Values) Int(name string, min int) int {
	raw := v.String(name)
	if raw == "" {
		return 0
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < min {
		v.Invalid(name, fmt.Sprintf("%q is not a whole number of at least %d", raw, min))
		return 0
	}
	return n
}

// Bytes reads a size such as 1MiB, 64MiB, 512KiB, 1GB or 1048576.
func (v *Values) Bytes(name string) int64 {
	raw := v.String(name)
	if raw == "" {
		return 0
	}
	n, err := ParseBytes(raw)
	if err != nil {
		v.Invalid(name, err.Error())
		return 0
	}
	return n
}

var units = []struct {
	suffix string
	mult   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}

// ParseBytes reads a positive size with an optional unit (KiB, MiB, GiB, KB, MB, GB, B).
func ParseBytes(raw string) (int64, error) {
	s, mult := strings.TrimSpace(raw), int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size such as 1MiB, 512KiB or 1048576", raw)
	}
	return n * mult, nil
}

// CheckCommand is a program's `check`: run reads the settings (an error there
// ends it) and reports each thing it proves about the deployment, one line each
// ("ok", or "FAIL" and what to fix); the command fails if any check did.
func CheckCommand(program, usage string, stdout io.Writer, run func(context.Context, *Values, *Checks) error) Command {
	return Command{Name: "check", Usage: "check the deployment: " + usage,
		Action: func(ctx context.Context, v *Values, _ *cli.Context) error {
			checks := &Checks{w: stdout, program: program}
			if err := run(ctx, v, checks); err != nil {
				return err
			}
			return checks.Err()
		}}
}

// Checks collects a check command's lines.
type Checks struct {
	w       io.Writer
	program string
	failed  int
}

// Report prints what was checked and how it went.
func (c *Checks) Report(what string, err error) {
	if err != nil {
		c.failed++
		fmt.Fprintf(c.w, "%s: FAIL %s: %v\n", c.program, what, err)
		return
	}
	fmt.Fprintf(c.w, "%s: ok   %s\n", c.program, what)
}

// Warn prints what a check could not prove or found amiss without failing the
// command: err says what to fix.
func (c *Checks) Warn(err error) {
	fmt.Fprintf(c.w, "%s: WARN %v\n", c.program, err)
}

// Err is nil when every check passed.
func (c *Checks) Err() error {
	if c.failed > 0 {
		return fmt.Errorf("%d check(s) failed; see the lines above", c.failed)
	}
	return nil
}
