//go:build !linux

package partition

import "os"

func dropCache(*os.File) {}
