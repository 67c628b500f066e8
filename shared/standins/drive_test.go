package standins

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2/google"
	"google.golang.org/api/drive/v3"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

// Google's own Go client against the stand-ins: its JWT grant, its multipart upload,
// and its chunked resumable upload (POST chunks, Content-Range a-b/*, the
// X-GUploader-No-308 answer) must all work, or the stand-ins are not Drive.
func TestGoogleClientAgainstDriveStandIn(t *testing.T) {
	tok := NewGoogleToken()
	defer tok.Close()
	d := NewDrive(tok)
	defer d.Close()
	root := d.AddFolder("root", true)
	conf, err := google.JWTConfigFromJSON(tok.KeyJSON(), drive.DriveScope)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	svc, err := drive.NewService(ctx, option.WithHTTPClient(conf.Client(ctx)), option.WithEndpoint(d.URL()+"drive/v3/"))
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1000, 5<<20 + 17, 4 << 20} { // multipart; resumable; an exact multiple of the chunk
		body := bytes.Repeat([]byte("zoomarchive"), size/11+1)[:size]
		f, err := svc.Files.Create(&drive.File{Name: "x", Parents: []string{root}, AppProperties: map[string]string{"k": "v"}}).
			Media(bytes.NewReader(body), googleapi.ChunkSize(1<<20)).SupportsAllDrives(true).Fields("id,size,md5Checksum").Do()
		if err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		sum := md5.Sum(body)
		if f.Size != int64(size) || f.Md5Checksum != hex.EncodeToString(sum[:]) {
			t.Errorf("%d bytes: Drive says %d bytes md5 %s", size, f.Size, f.Md5Checksum)
		}
	}
	list, err := svc.Files.List().Q("appProperties has { key='k' and value='v' } and trashed = false").
		SupportsAllDrives(true).IncludeItemsFromAllDrives(true).Fields("files(id,size)").Do()
	if err != nil || len(list.Files) != 3 {
		t.Fatalf("search by tag: %v, %d files", err, len(list.Files))
	}
	if _, err := svc.Files.Get("missing").Do(); err == nil || err.(*googleapi.Error).Code != http.StatusNotFound {
		t.Errorf("missing file: %v", err)
	}
}

// The token endpoint takes exactly the keys that exist: a key added works beside
// the first, and a deleted key's assertions are refused as Google refuses them.
func TestGoogleTokenTakesTheKeysThatExist(t *testing.T) {
	tok := NewGoogleToken()
	defer tok.Close()
	token := func(keyFile []byte) error {
		conf, err := google.JWTConfigFromJSON(keyFile, drive.DriveScope)
		if err != nil {
			t.Fatal(err)
		}
		_, err = conf.TokenSource(context.Background()).Token()
		return err
	}
	id, second := tok.NewKey()
	if err := token(tok.KeyJSON()); err != nil {
		t.Fatalf("the first key: %v", err)
	}
	if err := token(second); err != nil {
		t.Fatalf("the added key %s: %v", id, err)
	}
	tok.DeleteKey(firstKeyID)
	if err := token(tok.KeyJSON()); err == nil {
		t.Error("the deleted first key still gets tokens")
	}
	if err := token(second); err != nil {
		t.Errorf("the added key, after the first was deleted: %v", err)
	}
	tok.DeleteKey(id)
	if err := token(second); err == nil {
		t.Error("the deleted added key still gets tokens")
	}
}

// indexableText within Drive's 128 KB on create and update, never sent back but
// searched by fullText; an HTML upload whose metadata asks for a Google Doc becomes
// one (no md5Checksum, not downloadable), other media types are refused; a text
// file's bytes come back with alt=media.
func TestDriveIndexesAndConverts(t *testing.T) {
	tok := NewGoogleToken()
	defer tok.Close()
	d := NewDrive(tok)
	defer d.Close()
	root := d.AddFolder("root", true)
	conf, _ := google.JWTConfigFromJSON(tok.KeyJSON(), drive.DriveScope)
	ctx := context.Background()
	svc, err := drive.NewService(ctx, option.WithHTTPClient(conf.Client(ctx)), option.WithEndpoint(d.URL()+"drive/v3/"))
	if err != nil {
		t.Fatal(err)
	}
	hints := func(n int) *drive.FileContentHints {
		return &drive.FileContentHints{IndexableText: "Lopakhin: the cherry orchard is sold. " + strings.Repeat("x", n)}
	}
	video, err := svc.Files.Create(&drive.File{Name: "v.mp4", Parents: []string{root}, ContentHints: hints(100)}).
		Media(bytes.NewReader([]byte("mp4"))).SupportsAllDrives(true).Fields("id,contentHints").Do()
	if err != nil || video.ContentHints != nil {
		t.Fatalf("create with hints: %v, %+v sent back", err, video)
	}
	if _, err := svc.Files.Create(&drive.File{Name: "big", Parents: []string{root}, ContentHints: hints(128 << 10)}).
		Media(bytes.NewReader([]byte("x"))).SupportsAllDrives(true).Do(); err == nil || err.(*googleapi.Error).Code != 400 {
		t.Errorf("indexableText over 128KB on create: %v", err)
	}
	if _, err := svc.Files.Update(video.Id, &drive.File{ContentHints: hints(128 << 10)}).SupportsAllDrives(true).Do(); err == nil {
		t.Error("indexableText over 128KB on update taken")
	}
	if _, err := svc.Files.Update(video.Id, &drive.File{ContentHints: &drive.FileContentHints{IndexableText: "Firs: they have forgotten me"}}).
		SupportsAllDrives(true).Do(); err != nil {
		t.Fatal(err)
	}
	found := func(words string) []string {
		list, err := svc.Files.List().Q("fullText contains '" + words + "' and trashed = false").
			SupportsAllDrives(true).IncludeItemsFromAllDrives(true).Fields("files(id)").Do()
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, f := range list.Files {
			ids = append(ids, f.Id)
		}
		return ids
	}
	if got := found("FORGOTTEN  me"); len(got) != 1 || got[0] != video.Id {
		t.Errorf("fullText found %v, want the video", got)
	}
	if got := found("orchard is sold"); len(got) != 0 {
		t.Errorf("the replaced indexable text is still found: %v", got)
	}

	html := "<p><b>00:00:05 Firs</b> They have forgotten me &amp; gone.</p><p>00:01:00 Anya: Goodbye, house!</p>"
	doc, err := svc.Files.Create(&drive.File{Name: "t", Parents: []string{root}, MimeType: "application/vnd.google-apps.document"}).
		Media(strings.NewReader(html), googleapi.ContentType("text/html")).SupportsAllDrives(true).Fields("id,mimeType,md5Checksum").Do()
	if err != nil || doc.MimeType != "application/vnd.google-apps.document" || doc.Md5Checksum != "" {
		t.Fatalf("conversion: %v, %+v", err, doc)
	}
	var body string
	for _, f := range d.Files() {
		if f.ID == doc.Id {
			body = string(f.Body)
		}
	}
	if body != "00:00:05 Firs They have forgotten me & gone.\n00:01:00 Anya: Goodbye, house!\n" {
		t.Errorf("the Doc's text: %q", body)
	}
	if got := found("goodbye, house"); len(got) != 1 || got[0] != doc.Id {
		t.Errorf("fullText in the Doc found %v", got)
	}
	if _, err := svc.Files.Get(doc.Id).Download(); err == nil {
		t.Error("a Google Doc was downloaded with alt=media")
	}
	if _, err := svc.Files.Create(&drive.File{Name: "t", Parents: []string{root}, MimeType: "application/vnd.google-apps.document"}).
		Media(bytes.NewReader([]byte{0, 1}), googleapi.ContentType("video/mp4")).SupportsAllDrives(true).Do(); err == nil {
		t.Error("an mp4 converted to a Google Doc")
	}

	vtt := "WEBVTT\n\n1\n00:00:01.000 --> 00:00:02.000\nFirs: Life has gone by.\n"
	txt, err := svc.Files.Create(&drive.File{Name: "t.vtt", Parents: []string{root}, MimeType: "text/vtt"}).
		Media(strings.NewReader(vtt), googleapi.ContentType("text/vtt"), googleapi.ChunkSize(256<<10)).SupportsAllDrives(true).Do()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := svc.Files.Get(txt.Id).Download()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != vtt {
		t.Errorf("alt=media gave %q", got)
	}
}

// permissions.create and list on a folder: the notification flag kept, a fault
// refuses a share, an invalid grant is refused.
func TestDriveSharesAFolder(t *testing.T) {
	tok := NewGoogleToken()
	defer tok.Close()
	d := NewDrive(tok)
	defer d.Close()
	folder := d.AddFolder("rec", true)
	conf, _ := google.JWTConfigFromJSON(tok.KeyJSON(), drive.DriveScope)
	ctx := context.Background()
	svc, err := drive.NewService(ctx, option.WithHTTPClient(conf.Client(ctx)), option.WithEndpoint(d.URL()+"drive/v3/"))
	if err != nil {
		t.Fatal(err)
	}
	d.Inject(DriveFault{Kind: "share", Status: 500})
	grant := &drive.Permission{Type: "user", Role: "commenter", EmailAddress: "host@theatre.example"}
	if _, err := svc.Permissions.Create(folder, grant).SendNotificationEmail(false).SupportsAllDrives(true).Do(); err == nil {
		t.Fatal("the injected refusal did not come")
	}
	if _, err := svc.Permissions.Create(folder, grant).SendNotificationEmail(false).SupportsAllDrives(true).Do(); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Permissions.Create(folder, &drive.Permission{Type: "group", Role: "reader", EmailAddress: "cast@theatre.example"}).
		SupportsAllDrives(true).Do(); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Permissions.Create(folder, &drive.Permission{Type: "user", Role: "boss"}).SupportsAllDrives(true).Do(); err == nil {
		t.Error("an invalid grant taken")
	}
	list, err := svc.Permissions.List(folder).SupportsAllDrives(true).Fields("permissions(id,type,role,emailAddress)").Do()
	if err != nil || len(list.Permissions) != 2 || list.Permissions[0].EmailAddress != "host@theatre.example" || list.Permissions[0].Role != "commenter" {
		t.Fatalf("list: %v, %+v", err, list)
	}
	perms := d.Files()[0].Permissions
	if perms[0].Notified || !perms[1].Notified {
		t.Errorf("notification flags %+v", perms)
	}
}
