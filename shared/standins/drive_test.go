package standins

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"net/http"
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
