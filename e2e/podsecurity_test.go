package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// imageUsers maps an image's name (the last path element, without tag) to the Dockerfile
// that builds it: the sidecar's, and the example app's ("web" in the manifests).
var imageUsers = map[string]string{
	"authsidecar": "Dockerfile",
	"web":         "examples/nextjs/Dockerfile",
}

// ids is a numeric user and group.
type ids struct{ uid, gid int64 }

var numericUser = regexp.MustCompile(`^(\d+):(\d+)$`)

// dockerfileUser returns the USER of a Dockerfile's final stage, which must be numeric
// (uid:gid): with runAsNonRoot, the kubelet refuses to start an image whose user is a name.
func dockerfileUser(path string) (ids, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return ids{}, err
	}
	user := ""
	for line := range strings.SplitSeq(string(raw), "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
		case strings.EqualFold(fields[0], "FROM"):
			user = "" // a new stage starts as its base image's user
		case strings.EqualFold(fields[0], "USER") && len(fields) == 2:
			user = fields[1]
		}
	}
	m := numericUser.FindStringSubmatch(user)
	if m == nil {
		return ids{}, fmt.Errorf("%s: final stage's USER is %q, want numeric uid:gid such as 65532:65532", path, user)
	}
	uid, _ := strconv.ParseInt(m[1], 10, 64)
	gid, _ := strconv.ParseInt(m[2], 10, 64)
	return ids{uid, gid}, nil
}

// imageName is the last path element of an image reference, without tag or digest.
func imageName(image string) string {
	image = image[strings.LastIndex(image, "/")+1:]
	if i := strings.IndexAny(image, ":@"); i >= 0 {
		image = image[:i]
	}
	return image
}

// podSecurityProblems lists what would keep each container of the workloads in objs from
// starting under runAsNonRoot, or run it as another user than its image's: effective
// runAsNonRoot, numeric non-zero runAsUser and runAsGroup (the container's own, else the
// Pod's), and for images built here, the ids of their Dockerfile's USER.
func podSecurityProblems(objs []object, want map[string]ids) []string {
	var problems []string
	for _, o := range objs {
		spec := o.podSpec()
		if spec == nil {
			continue
		}
		pod, _ := spec["securityContext"].(map[string]any)
		containers := append(list(spec["initContainers"]), list(spec["containers"])...)
		if len(containers) == 0 {
			problems = append(problems, fmt.Sprintf("%s %s: no containers", o.kind(), o.name()))
		}
		for _, c := range containers {
			where := fmt.Sprintf("%s %s, container %v", o.kind(), o.name(), c["name"])
			sc, _ := c["securityContext"].(map[string]any)
			setting := func(key string) any {
				if v, ok := sc[key]; ok {
					return v
				}
				return pod[key]
			}
			if setting("runAsNonRoot") != true {
				problems = append(problems, where+": runAsNonRoot is not true")
			}
			uid, uidOK := setting("runAsUser").(int)
			gid, gidOK := setting("runAsGroup").(int)
			if !uidOK || !gidOK || uid == 0 {
				problems = append(problems, fmt.Sprintf("%s: runAsUser %v, runAsGroup %v: want numeric non-root ids",
					where, setting("runAsUser"), setting("runAsGroup")))
				continue
			}
			image, _ := c["image"].(string)
			if w, ok := want[imageName(image)]; ok && (w.uid != int64(uid) || w.gid != int64(gid)) {
				problems = append(problems, fmt.Sprintf("%s: runs as %d:%d, but image %s's Dockerfile says USER %d:%d",
					where, uid, gid, image, w.uid, w.gid))
			}
		}
	}
	return problems
}

// imageIDs reads the USER of every Dockerfile in imageUsers.
func imageIDs(tb testing.TB) map[string]ids {
	tb.Helper()
	want := map[string]ids{}
	for image, dockerfile := range imageUsers {
		id, err := dockerfileUser(repoFile(dockerfile))
		if err != nil {
			tb.Fatal(err)
		}
		want[image] = id
	}
	return want
}

// kustomizeDirs are the kustomizations under deploy/k8s a user applies.
var kustomizeDirs = []string{"deploy/k8s", "deploy/k8s/ingress-nginx", "deploy/k8s/traefik"}

func TestPodSecurityMatchesTheImagesInEveryManifest(t *testing.T) {
	want := imageIDs(t)
	if want["authsidecar"] != (ids{65532, 65532}) {
		t.Errorf("Dockerfile USER = %v, want distroless nonroot 65532:65532", want["authsidecar"])
	}
	renders := map[string][]byte{}
	for _, dir := range kustomizeDirs {
		renders["kustomize build "+dir] = render(t, "kustomize", "build", repoFile(dir))
	}
	for _, values := range helmValueFiles(t) {
		renders["helm template "+values] = helmTemplate(t, values)
	}
	for what, out := range renders {
		objs := parseObjects(t, out)
		pods := 0
		for _, o := range objs {
			if o.podSpec() != nil {
				pods++
			}
		}
		if pods == 0 {
			t.Errorf("%s: no Pod spec rendered", what)
		}
		for _, p := range podSecurityProblems(objs, want) {
			t.Errorf("%s: %s", what, p)
		}
	}
}

func TestPodSecurityCheckCatchesMismatches(t *testing.T) {
	want := map[string]ids{"authsidecar": {65532, 65532}}
	pod := func(podSC, containerSC string) []object {
		return parseObjects(t, []byte(`kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      securityContext: `+podSC+`
      containers:
        - name: authsidecar
          image: ghcr.io/authsidecar/authsidecar:1.0.0
          securityContext: `+containerSC+`
`))
	}
	tests := []struct {
		name, podSC, containerSC, want string
	}{
		{"matching ids", `{runAsNonRoot: true}`, `{runAsUser: 65532, runAsGroup: 65532}`, ""},
		{"ids from the Pod", `{runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532}`, `{}`, ""},
		{"no runAsUser", `{runAsNonRoot: true}`, `{}`, "want numeric non-root ids"},
		{"other uid", `{runAsNonRoot: true}`, `{runAsUser: 1000, runAsGroup: 65532}`, "Dockerfile says USER 65532:65532"},
		{"other gid", `{runAsNonRoot: true}`, `{runAsUser: 65532, runAsGroup: 0}`, "Dockerfile says USER 65532:65532"},
		{"root", `{runAsNonRoot: true}`, `{runAsUser: 0, runAsGroup: 0}`, "want numeric non-root ids"},
		{"runAsNonRoot off", `{}`, `{runAsUser: 65532, runAsGroup: 65532}`, "runAsNonRoot is not true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Join(podSecurityProblems(pod(tt.podSC, tt.containerSC), want), "\n")
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("problems = %q, want one containing %q", got, tt.want)
			}
		})
	}
}

func TestDockerfileUserMustBeNumeric(t *testing.T) {
	tests := []struct{ dockerfile, want string }{
		{"FROM a\nUSER 1000:1000\n", ""},
		{"FROM a\nUSER nonroot:nonroot\n", "want numeric uid:gid"},
		{"FROM a\nUSER node\n", "want numeric uid:gid"},
		{"FROM a AS build\nUSER 1000:1000\nFROM b\n", "want numeric uid:gid"}, // the final stage has none
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "Dockerfile")
		if err := os.WriteFile(path, []byte(tt.dockerfile), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := dockerfileUser(path)
		if got := fmt.Sprint(err); (tt.want == "") != (err == nil) || !strings.Contains(got, tt.want) {
			t.Errorf("%q: error %v, want %q", tt.dockerfile, err, tt.want)
		}
	}
}
