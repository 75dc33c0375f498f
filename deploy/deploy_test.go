// Package deploy_test checks the deployment files at the top of the
// repository: docker-compose.yml, the Dockerfile and deploy/haproxy.cfg,
// so that what an operator starts is what the tests describe. No Docker
// daemon runs here, so the image is not built; HAProxy checks its own
// configuration when it is installed (CI installs it).
package deploy_test

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type compose struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       any               `yaml:"build"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		Volumes     []string          `yaml:"volumes"`
		Healthcheck map[string]any    `yaml:"healthcheck"`
		DependsOn   any               `yaml:"depends_on"`
		Networks    any               `yaml:"networks"`
	} `yaml:"services"`
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCompose: Redis keeps every acknowledged write, PostgreSQL is the
// instances' database of record, three chatd instances share them, and HAProxy balances them round robin without stickiness,
// trusted by chatd as the only proxy.
func TestCompose(t *testing.T) {
	var c compose
	if err := yaml.Unmarshal([]byte(readFile(t, "../docker-compose.yml")), &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	redis, ok := c.Services["redis"]
	if !ok {
		t.Fatal("no redis service")
	}
	cmd := strings.Join(redis.Command, " ")
	for _, want := range []string{"--appendonly yes", "--appendfsync always"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("redis command %q lacks %s", cmd, want)
		}
	}
	if redis.Healthcheck == nil {
		t.Error("redis has no health check")
	}

	// The database of record: the chatd instances' DATABASE_URL names its
	// user, password and database.
	pg, ok := c.Services["postgres"]
	if !ok {
		t.Fatal("no postgres service")
	}
	if pg.Healthcheck == nil || !slices.Contains(pg.Volumes, "postgres-data:/var/lib/postgresql/data") {
		t.Errorf("postgres: health check %v, volumes %v; want both", pg.Healthcheck, pg.Volumes)
	}
	wantDB := "postgres://" + pg.Environment["POSTGRES_USER"] + ":" + pg.Environment["POSTGRES_PASSWORD"] +
		"@postgres:5432/" + pg.Environment["POSTGRES_DB"] + "?sslmode=disable"

	haproxy, ok := c.Services["haproxy"]
	if !ok {
		t.Fatal("no haproxy service")
	}
	if !slices.Contains(haproxy.Volumes, "./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro") {
		t.Errorf("haproxy volumes %v do not mount deploy/haproxy.cfg", haproxy.Volumes)
	}
	if !slices.Contains(haproxy.Ports, "8000:8000") {
		t.Errorf("haproxy ports %v", haproxy.Ports)
	}
	haproxyIP := regexp.MustCompile(`ipv4_address:\s*(\S+)`).FindStringSubmatch(readFile(t, "../docker-compose.yml"))
	if haproxyIP == nil {
		t.Fatal("haproxy has no fixed address for chatd to trust")
	}

	var instances []string
	ids := map[string]bool{}
	for name, s := range c.Services {
		if !strings.HasPrefix(name, "chatd") {
			continue
		}
		instances = append(instances, name)
		env := s.Environment
		if env["REDIS_URL"] != "redis://redis:6379/0" {
			t.Errorf("%s: REDIS_URL = %q", name, env["REDIS_URL"])
		}
		if env["DATABASE_URL"] != wantDB || env["CHAT_MIGRATE"] != "true" {
			t.Errorf("%s: DATABASE_URL = %q, CHAT_MIGRATE = %q; want %s, true", name, env["DATABASE_URL"], env["CHAT_MIGRATE"], wantDB)
		}
		if env["CHAT_TRUSTED_PROXIES"] != haproxyIP[1] {
			t.Errorf("%s: CHAT_TRUSTED_PROXIES = %q, want the load balancer %s", name, env["CHAT_TRUSTED_PROXIES"], haproxyIP[1])
		}
		if id := env["CHAT_INSTANCE_ID"]; id == "" || ids[id] {
			t.Errorf("%s: CHAT_INSTANCE_ID %q is empty or taken", name, id)
		} else {
			ids[id] = true
		}
		if s.Build != "." {
			t.Errorf("%s: build = %v, want the Dockerfile here", name, s.Build)
		}
	}
	slices.Sort(instances)
	if !slices.Equal(instances, []string{"chatd1", "chatd2", "chatd3"}) {
		t.Fatalf("chatd instances = %v, want three", instances)
	}

	// HAProxy's backend names exactly these instances.
	var servers []string
	cfg := readFile(t, "haproxy.cfg")
	sc := bufio.NewScanner(strings.NewReader(cfg))
	directives := map[string]bool{}
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		directives[strings.Join(f, " ")] = true
		if f[0] == "server" && len(f) >= 3 {
			servers = append(servers, f[1])
			if f[2] != f[1]+":8000" {
				t.Errorf("server %s at %s, want %s:8000", f[1], f[2], f[1])
			}
		}
		if f[0] == "cookie" || strings.HasPrefix(f[0], "stick") || f[0] == "hash-type" {
			t.Errorf("haproxy.cfg makes sessions sticky: %s", sc.Text())
		}
	}
	for _, want := range []string{"balance roundrobin", "option httpchk GET /healthz", "option forwardfor",
		"option redispatch 1", "retry-on conn-failure empty-response 503"} {
		if !directives[want] {
			t.Errorf("haproxy.cfg lacks %q", want)
		}
	}
	slices.Sort(servers)
	if !slices.Equal(servers, instances) {
		t.Errorf("haproxy servers %v, compose instances %v", servers, instances)
	}
}

// TestHAProxyConfigValid asks HAProxy itself to check deploy/haproxy.cfg.
func TestHAProxyConfigValid(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("haproxy is not installed; .ci/run installs it")
		}
		t.Skip("haproxy is not installed (CI installs it)")
	}
	out, err := exec.Command(bin, "-c", "-f", "haproxy.cfg").CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}

// TestDockerfile: a multi-stage build of a static binary, run as a
// non-root user, with a health check that needs no shell.
func TestDockerfile(t *testing.T) {
	df := readFile(t, "../Dockerfile")
	var froms int
	for _, line := range strings.Split(df, "\n") {
		if strings.HasPrefix(line, "FROM ") {
			froms++
		}
	}
	if froms < 2 {
		t.Errorf("%d FROM lines, want a multi-stage build", froms)
	}
	for _, want := range []string{
		"CGO_ENABLED=0",
		"USER nonroot",
		`HEALTHCHECK`,
		`"healthcheck"]`,
		"ENV CHAT_ADDR=0.0.0.0:8000",
		`ENTRYPOINT ["/usr/local/bin/chatd"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}
