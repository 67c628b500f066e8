package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/api/drive/v3"
	"google.golang.org/api/googleapi"

	"zoomarchive/shared/events"
)

// Drive, read only: before a recording leaves Zoom, fetch looks with a Google key
// of its own (scope drive.metadata.readonly: it can read names, sizes and
// checksums, and change nothing) at each Drive file upload says holds a file of
// it. upload's "verified" is a claim; this is the proof.

// driveReader reads file metadata in the archive under root.
type driveReader struct {
	files *drive.FilesService
	root  string // DRIVE_FOLDER_ID
}

// maxDepth bounds the walk from a file up to the archive's root folder; the
// layout is a few folders deep.
const maxDepth = 16

// driveProof is what Drive says of the copy upload named for one file.
type driveProof struct {
	claimed bool // upload named a Drive file
	found   bool
	trashed bool // the file, or a folder above it, is in Drive's trash
	inside  bool // under DRIVE_FOLDER_ID
	size    int64
	md5     string
}

// against says, in words for the admins, why the copy does not prove that Drive
// holds the bytes fetch read from Zoom; "" when it does.
func (p driveProof) against(own events.FileFacts) string {
	what := "the " + own.File.FileType + " file"
	switch {
	case !p.claimed:
		return what + " has no Drive copy named for it"
	case !p.found:
		return "Drive has no copy of " + what + " where upload said it put it"
	case p.trashed:
		return "the Drive copy of " + what + " is in Drive's trash"
	case !p.inside:
		return "the Drive copy of " + what + " is not inside the archive folder"
	case p.size != own.Size || p.md5 != own.MD5:
		return fmt.Sprintf("the Drive copy of %s (%d bytes, MD5 %s) is not what fetch read from Zoom (%d bytes, MD5 %s)",
			what, p.size, p.md5, own.Size, own.MD5)
	}
	return ""
}

// prove asks Drive about the copy each file's job names.
func (d *driveReader) prove(ctx context.Context, keys []string, claims map[string]events.FileJob) (map[string]driveProof, error) {
	up := map[string]folderUp{} // folders read in this proof
	out := map[string]driveProof{}
	for _, key := range keys {
		id := claims[key].DriveID
		if id == "" {
			out[key] = driveProof{}
			continue
		}
		f, err := d.files.Get(id).SupportsAllDrives(true).Fields("id,size,md5Checksum,trashed,parents").Context(ctx).Do()
		if driveStatus(err) == http.StatusNotFound {
			out[key] = driveProof{claimed: true}
			continue
		} else if err != nil {
			return nil, fmt.Errorf("drive: reading file %s: %w", id, err)
		}
		inside, trashed, err := d.under(ctx, f.Parents, up)
		if err != nil {
			return nil, err
		}
		out[key] = driveProof{claimed: true, found: true, trashed: f.Trashed || trashed, inside: inside, size: f.Size, md5: f.Md5Checksum}
	}
	return out, nil
}

// folderUp is a folder's parents, and whether it is trashed.
type folderUp struct {
	parents []string
	trashed bool
}

// under walks from parents up to the archive's root: whether it is reached, and
// whether a folder on the way is in the trash.
func (d *driveReader) under(ctx context.Context, parents []string, read map[string]folderUp) (inside, trashed bool, err error) {
	seen := map[string]bool{}
	for depth := 0; depth < maxDepth && len(parents) > 0; depth++ {
		var next []string
		for _, id := range parents {
			if id == d.root {
				return true, trashed, nil
			}
			if seen[id] {
				continue
			}
			seen[id] = true
			f, ok := read[id]
			if !ok {
				got, err := d.files.Get(id).SupportsAllDrives(true).Fields("id,trashed,parents").Context(ctx).Do()
				switch {
				case driveStatus(err) == http.StatusNotFound:
				case err != nil:
					return false, false, fmt.Errorf("drive: reading folder %s: %w", id, err)
				default:
					f = folderUp{parents: got.Parents, trashed: got.Trashed}
				}
				read[id] = f
			}
			trashed = trashed || f.trashed
			next = append(next, f.parents...)
		}
		parents = next
	}
	return false, trashed, nil
}

// driveStatus is the HTTP status of Drive's refusal, or 0.
func driveStatus(err error) int {
	var g *googleapi.Error
	if errors.As(err, &g) {
		return g.Code
	}
	return 0
}
