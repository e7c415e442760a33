package source

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gatehouse-edge/gatehouse/internal/testenv"
)

func TestRevisionIDIsContentDerived(t *testing.T) {
	a := []Spec{{Origin: "a.yaml", Data: []byte("x")}, {Origin: "b.yaml", Data: []byte("y")}}
	b := []Spec{a[1], a[0]}
	if RevisionID(a) != RevisionID(b) {
		t.Error("the same specs in another order gave another revision id")
	}
	c := []Spec{a[0], {Origin: "b.yaml", Data: []byte("z")}}
	if RevisionID(a) == RevisionID(c) {
		t.Error("changed content kept the revision id")
	}
}

func TestOpenRejectsUnknownScheme(t *testing.T) {
	_, _, err := Open(context.Background(), "ftp://x", Options{})
	if err == nil || !strings.Contains(err.Error(), "file:DIR") {
		t.Fatalf("Open(ftp://x) = %v, want an error naming the accepted forms", err)
	}
	if _, _, err := Open(context.Background(), "file:/does/not/exist", Options{}); err == nil {
		t.Fatal("Open of a missing directory succeeded")
	}
}

func TestDirWatch(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "a: 1")
	write("notes.txt", "ignored")
	write(".hidden.yaml", "ignored")
	src, err := NewDir(dir, Options{HoldOff: 10 * time.Millisecond, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	revs := make(chan Revision, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Watch(ctx, func(r Revision) { revs <- r }) }()

	next := func(what string) Revision {
		t.Helper()
		select {
		case r := <-revs:
			return r
		case <-time.After(10 * time.Second):
			t.Fatalf("no revision after %s", what)
		}
		return Revision{}
	}
	r1 := next("start")
	if len(r1.Specs) != 1 || r1.Specs[0].Origin != filepath.Join(dir, "a.yaml") || string(r1.Specs[0].Data) != "a: 1" {
		t.Fatalf("first revision = %+v, want only a.yaml", r1.Specs)
	}
	write("b.json", `{"b": 2}`)
	r2 := next("adding b.json")
	for len(r2.Specs) != 2 { // the hold-off may have split the burst
		r2 = next("adding b.json")
	}
	if r2.ID == r1.ID {
		t.Error("revision id did not change")
	}
	if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	r3 := next("removing a.yaml")
	if len(r3.Specs) != 1 || !strings.HasSuffix(r3.Specs[0].Origin, "b.json") {
		t.Fatalf("after removal = %+v", r3.Specs)
	}
	// Touching a non-spec file delivers nothing new.
	write("notes.txt", "still ignored")
	select {
	case r := <-revs:
		t.Fatalf("unexpected revision %s after a non-spec change", r.ID)
	case <-time.After(300 * time.Millisecond):
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Watch = %v after cancel", err)
	}
}

func TestS3PollsWithETags(t *testing.T) {
	srv := testenv.StartS3(t, "specs")
	ctx := context.Background()
	o := Options{S3Endpoint: srv.Endpoint, S3Region: srv.Region, S3AccessKey: srv.AccessKey, S3SecretKey: srv.SecretKey, PollInterval: 50 * time.Millisecond}
	src, err := NewS3(ctx, "s3://specs/edge/", o)
	if err != nil {
		t.Fatal(err)
	}
	put := func(key, body string) {
		t.Helper()
		if _, err := src.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("specs"), Key: aws.String(key), Body: strings.NewReader(body)}); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	put("edge/a.yaml", "a: 1")
	put("edge/b.yaml", "b: 1")
	put("other/c.yaml", "outside the prefix")
	put("edge/readme.md", "not a spec")

	r1, err := src.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(r1.Specs) != 2 || r1.Specs[0].Origin != "s3://specs/edge/a.yaml" {
		t.Fatalf("revision = %+v", r1.Specs)
	}
	if src.downloads != 2 {
		t.Fatalf("downloads = %d, want 2", src.downloads)
	}
	r2, err := src.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r2.ID != r1.ID || src.downloads != 2 {
		t.Fatalf("unchanged prefix: id %s→%s, downloads %d (want no new download)", r1.ID, r2.ID, src.downloads)
	}
	put("edge/b.yaml", "b: 2")
	r3, err := src.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r3.ID == r1.ID || src.downloads != 3 || string(r3.Specs[1].Data) != "b: 2" {
		t.Fatalf("after changing b: id same=%v downloads=%d data=%q", r3.ID == r1.ID, src.downloads, r3.Specs[1].Data)
	}

	// Watch delivers the current revision and then the deletion.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	revs := make(chan Revision, 8)
	go src.Watch(wctx, func(r Revision) { revs <- r })
	first := <-revs
	if first.ID != r3.ID {
		t.Fatalf("first watched revision %s, want %s", first.ID, r3.ID)
	}
	if _, err := src.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("specs"), Key: aws.String("edge/a.yaml")}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-revs:
		if len(r.Specs) != 1 {
			t.Fatalf("after delete: %d specs", len(r.Specs))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("deletion never delivered")
	}
}
